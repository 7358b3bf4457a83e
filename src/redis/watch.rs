//! The Redis side of a primary watch ([`crate::watch`]): a pub/sub
//! connection, authenticated like the engine's other connections, that
//! subscribes to a channel nobody publishes on and so sits blocked on a read
//! until the connection breaks. Pub/sub clients are exempt from Redis'
//! idle `timeout`; the connection changes nothing on the server.

use futures::FutureExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::RedisError;
use super::observe::Timeouts;
use crate::engine::{WatchBroken, WatchOpening};

/// The channel a watch subscribes to.
pub const CHANNEL: &str = "__ordinal_primary_watch__";

/// One RESP2 command as an array of bulk strings.
fn encode(out: &mut Vec<u8>, args: &[&str]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// The request (AUTH when there is a password, then SUBSCRIBE) and the
/// exact replies a server that accepts it sends.
fn handshake(password: &str) -> (Vec<u8>, Vec<u8>) {
    let (mut request, mut replies) = (Vec::new(), Vec::new());
    if !password.is_empty() {
        encode(&mut request, &["AUTH", password]);
        replies.extend_from_slice(b"+OK\r\n");
    }
    encode(&mut request, &["SUBSCRIBE", CHANNEL]);
    replies.extend_from_slice(
        format!(
            "*3\r\n$9\r\nsubscribe\r\n${}\r\n{CHANNEL}\r\n:1\r\n",
            CHANNEL.len()
        )
        .as_bytes(),
    );
    (request, replies)
}

/// What the replies received so far say: `Some(Ok)` accepted, `Some(Err)`
/// refused (an error reply or anything else unexpected), `None` not yet
/// known.
fn judge(received: &[u8], expected: &[u8]) -> Option<Result<(), String>> {
    let Some(diverged) = received.iter().zip(expected).position(|(r, e)| r != e) else {
        return (received.len() >= expected.len()).then_some(Ok(()));
    };
    // Wait for the line that diverged to end, then report it.
    let line_start = received[..diverged]
        .windows(2)
        .rposition(|w| w == b"\r\n")
        .map_or(0, |i| i + 2);
    let rest = &received[line_start..];
    let end = rest.windows(2).position(|w| w == b"\r\n")?;
    Some(Err(String::from_utf8_lossy(&rest[..end]).into_owned()))
}

/// Connect to `host:port`, authenticate with `password`, subscribe, and
/// return the future that completes when the connection ends.
///
/// The connection speaks RESP by hand instead of through the client
/// library's pub/sub connection: it only writes one request and then reads
/// until the end, and a watch per cluster held that library's codec
/// buffers and driver task (about 30 KiB each) for nothing.
pub async fn open(
    host: &str,
    port: u16,
    password: &str,
    timeouts: Timeouts,
) -> Result<WatchBroken, RedisError> {
    let io_error = |e: std::io::Error| RedisError::connect(host, port, redis::RedisError::from(e));
    let mut stream =
        match tokio::time::timeout(timeouts.connect, TcpStream::connect((host, port))).await {
            Ok(r) => r.map_err(io_error)?,
            Err(_) => {
                return Err(RedisError::Timeout(format!(
                    "opening the primary watch to {host}:{port}"
                )));
            }
        };
    let (request, expected) = handshake(password);
    let subscribed = async {
        stream.write_all(&request).await.map_err(io_error)?;
        let mut received = Vec::with_capacity(expected.len());
        let mut chunk = [0u8; 128];
        loop {
            let n = stream.read(&mut chunk).await.map_err(io_error)?;
            if n == 0 {
                return Err(RedisError::Protocol(format!(
                    "{host}:{port} closed the primary watch while subscribing"
                )));
            }
            received.extend_from_slice(&chunk[..n]);
            match judge(&received, &expected) {
                Some(Ok(())) => return Ok(()),
                Some(Err(reply)) => {
                    return Err(RedisError::Protocol(format!(
                        "subscribing the primary watch on {host}:{port}: {reply}"
                    )));
                }
                None => {}
            }
        }
    };
    match tokio::time::timeout(timeouts.command, subscribed).await {
        Ok(r) => r?,
        Err(_) => {
            return Err(RedisError::Timeout(format!(
                "subscribing the primary watch on {host}:{port}"
            )));
        }
    }
    let target = format!("{host}:{port}");
    Ok(async move {
        // Messages (someone published on the channel) are read and
        // ignored; the read ends when the connection does.
        let mut sink = [0u8; 64];
        let why = loop {
            match stream.read(&mut sink).await {
                Ok(0) => break "closed".to_string(),
                Ok(_) => {}
                Err(e) => break e.to_string(),
            }
        };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_handshake_is_auth_then_subscribe_and_judged_by_its_exact_replies() {
        let (request, expected) = handshake("p w");
        assert_eq!(
            String::from_utf8_lossy(&request),
            format!(
                "*2\r\n$4\r\nAUTH\r\n$3\r\np w\r\n*2\r\n$9\r\nSUBSCRIBE\r\n$25\r\n{CHANNEL}\r\n"
            )
        );
        let (no_auth, _) = handshake("");
        assert!(no_auth.starts_with(b"*2\r\n$9\r\nSUBSCRIBE"));
        // Replies arrive in pieces: undecided until complete.
        for cut in 0..expected.len() {
            assert_eq!(judge(&expected[..cut], &expected), None, "{cut}");
        }
        assert_eq!(judge(&expected, &expected), Some(Ok(())));
        let refused = b"-WRONGPASS invalid username-password pair\r\n-NOAUTH";
        assert_eq!(
            judge(&refused[..10], &expected),
            None,
            "the error line is not complete yet"
        );
        assert_eq!(
            judge(refused, &expected),
            Some(Err("-WRONGPASS invalid username-password pair".into()))
        );
        let mut late = b"+OK\r\n".to_vec();
        late.extend_from_slice(b"-ERR unknown command\r\n");
        assert_eq!(
            judge(&late, &expected),
            Some(Err("-ERR unknown command".into()))
        );
    }
}
