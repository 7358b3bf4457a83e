//! The operator's connection to one member: one TCP stream, one request at
//! a time (the engine takes a member's connection for a pass and drops it
//! on any error), speaking RESP2 through the client library's commands,
//! pipelines and reply parser ([`redis::aio::ConnectionLike`]).
//!
//! The client library's multiplexed connection keeps two 8 KiB codec
//! buffers, a channel and a driver task per connection for concurrent
//! callers this engine never has; one is kept per member between passes,
//! so at hundreds of clusters that was most of the memory a cluster cost.
//! Here the read buffer is released after each reply and nothing runs
//! between requests.
//!
//! A request that fails or is abandoned part-way (an I/O error, the
//! command timeout, a dropped future) leaves the connection broken: every
//! later request fails at once, so a late reply is never read as the
//! answer to another command.

use std::time::Duration;

use bytes::BytesMut;
use futures::FutureExt;
use redis::aio::ConnectionLike;
use redis::{Cmd, Pipeline, RedisFuture, Value, ValueCodec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::Decoder;

use super::RedisError;
use super::observe::Timeouts;

/// Read buffer kept between replies at most; a larger one (an `INFO`
/// reply) is released once its reply is parsed.
const KEPT_BUFFER: usize = 512;

/// One member's connection; see the module documentation.
pub struct Conn {
    stream: TcpStream,
    buffer: BytesMut,
    codec: ValueCodec,
    response_timeout: Duration,
    /// Set while a request is under way and left set when it does not
    /// finish: the stream's position in the reply sequence is unknown.
    broken: bool,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("peer", &self.stream.peer_addr().ok())
            .field("broken", &self.broken)
            .finish()
    }
}

fn io(kind: std::io::ErrorKind, what: &str) -> redis::RedisError {
    redis::RedisError::from(std::io::Error::new(kind, what.to_string()))
}

impl Conn {
    /// Connect to `host:port` and authenticate with `password` (none when
    /// empty), within the connect and command timeouts.
    pub async fn connect(
        host: &str,
        port: u16,
        password: &str,
        timeouts: Timeouts,
    ) -> Result<Self, RedisError> {
        let stream =
            match tokio::time::timeout(timeouts.connect, TcpStream::connect((host, port))).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return Err(RedisError::connect(host, port, e.into())),
                Err(_) => {
                    return Err(RedisError::connect(
                        host,
                        port,
                        io(std::io::ErrorKind::TimedOut, "connect timed out"),
                    ));
                }
            };
        stream
            .set_nodelay(true)
            .map_err(|e| RedisError::connect(host, port, e.into()))?;
        let mut conn = Self {
            stream,
            buffer: BytesMut::new(),
            codec: ValueCodec::default(),
            response_timeout: timeouts.command,
            broken: false,
        };
        if !password.is_empty() {
            redis::cmd("AUTH")
                .arg(password)
                .exec_async(&mut conn)
                .await
                .map_err(|e| RedisError::connect(host, port, e))?;
        }
        Ok(conn)
    }

    /// Write `request` and read `replies` replies, within the response
    /// timeout.
    async fn exchange(&mut self, request: &[u8], replies: usize) -> redis::RedisResult<Vec<Value>> {
        if self.broken {
            return Err(io(
                std::io::ErrorKind::BrokenPipe,
                "an earlier request on this connection did not finish",
            ));
        }
        self.broken = true;
        let timeout = self.response_timeout;
        let values =
            match tokio::time::timeout(timeout, self.write_and_read(request, replies)).await {
                Ok(r) => r?,
                Err(_) => return Err(io(std::io::ErrorKind::TimedOut, "no reply in time")),
            };
        if self.buffer.capacity() > KEPT_BUFFER {
            self.buffer = BytesMut::new();
        }
        self.broken = false;
        Ok(values)
    }

    /// Read (and ignore) whatever arrives until the connection ends; what
    /// ended it. For a connection that only listens (the primary watch).
    pub async fn until_closed(mut self) -> String {
        let mut sink = [0u8; 64];
        loop {
            match self.stream.read(&mut sink).await {
                Ok(0) => return "closed".into(),
                Ok(_) => {}
                Err(e) => return e.to_string(),
            }
        }
    }

    async fn write_and_read(
        &mut self,
        request: &[u8],
        replies: usize,
    ) -> redis::RedisResult<Vec<Value>> {
        self.stream.write_all(request).await?;
        let mut values = Vec::with_capacity(replies);
        while values.len() < replies {
            if let Some(v) = self.codec.decode(&mut self.buffer)? {
                values.push(v);
                continue;
            }
            if self.stream.read_buf(&mut self.buffer).await? == 0 {
                return Err(io(
                    std::io::ErrorKind::UnexpectedEof,
                    "the server closed the connection",
                ));
            }
        }
        if !self.buffer.is_empty() {
            // More than was asked for: not a reply sequence this
            // connection can follow.
            return Err(io(
                std::io::ErrorKind::InvalidData,
                "unrequested data after the replies",
            ));
        }
        Ok(values)
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        async move {
            let mut values = self.exchange(&cmd.get_packed_command(), 1).await?;
            values
                .pop()
                .ok_or_else(|| io(std::io::ErrorKind::InvalidData, "no reply"))
        }
        .boxed()
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        async move {
            let mut values = self
                .exchange(&pipeline.get_packed_pipeline(), offset + count)
                .await?;
            Ok(values.split_off(offset))
        }
        .boxed()
    }

    fn get_db(&self) -> i64 {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    const T: Timeouts = Timeouts {
        connect: Duration::from_secs(2),
        command: Duration::from_millis(300),
    };

    /// A server that answers each request read with `answer(n)` (the n-th
    /// request), or not at all when it returns None.
    async fn server(answer: fn(usize) -> Option<&'static [u8]>) -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = l.local_addr().expect("addr").port();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.expect("accept");
            let mut buf = [0u8; 1024];
            for n in 0.. {
                if s.read(&mut buf).await.unwrap_or(0) == 0 {
                    return;
                }
                if let Some(a) = answer(n) {
                    let _ = s.write_all(a).await;
                }
            }
        });
        port
    }

    async fn ping_fails(c: &mut Conn, why: &str) -> redis::RedisError {
        redis::cmd("PING")
            .query_async::<String>(c)
            .await
            .expect_err(why)
    }

    #[tokio::test]
    async fn replies_are_read_in_order_and_pipelines_return_theirs() {
        let port = server(|n| match n {
            0 => Some(b"+PONG\r\n"),
            // Three replies in one read, an error reply among them.
            _ => Some(b"$5\r\nhello\r\n-ERR nope\r\n:7\r\n"),
        })
        .await;
        let mut c = Conn::connect("127.0.0.1", port, "", T)
            .await
            .expect("connect");
        let pong: String = redis::cmd("PING").query_async(&mut c).await.expect("ping");
        assert_eq!(pong, "PONG");
        let mut p = redis::pipe();
        p.cmd("GET").arg("a").cmd("X").cmd("INCR").arg("b");
        let err = p
            .query_async::<(String, String, i64)>(&mut c)
            .await
            .expect_err("the error reply fails the pipeline");
        assert!(err.to_string().contains("nope"), "{err}");
    }

    #[tokio::test]
    async fn a_request_without_a_reply_in_time_leaves_the_connection_broken() {
        let port = server(|n| (n > 0).then_some(b"+LATE\r\n".as_slice())).await;
        let mut c = Conn::connect("127.0.0.1", port, "", T)
            .await
            .expect("connect");
        let err = ping_fails(&mut c, "no reply").await;
        assert!(err.is_timeout(), "{err}");
        // The server would answer the next request, but the connection no
        // longer knows which reply is whose.
        let err = ping_fails(&mut c, "broken").await;
        assert!(err.to_string().contains("did not finish"), "{err}");
    }

    #[tokio::test]
    async fn more_replies_than_requests_is_an_error() {
        let port = server(|_| Some(b"+OK\r\n+OK\r\n".as_slice())).await;
        let mut c = Conn::connect("127.0.0.1", port, "", T)
            .await
            .expect("connect");
        let err = ping_fails(&mut c, "two replies to one request").await;
        assert!(err.to_string().contains("unrequested"), "{err}");
    }

    #[tokio::test]
    async fn a_refused_password_is_an_error_at_connect() {
        let port =
            server(|_| Some(b"-WRONGPASS invalid username-password pair\r\n".as_slice())).await;
        let err = Conn::connect("127.0.0.1", port, "x", T)
            .await
            .expect_err("refused");
        assert!(err.is_auth_failure(), "{err}");
    }
}
