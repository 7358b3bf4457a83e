//! Streaming backup and restore of a Redis dataset.
//!
//! Backup speaks the replication protocol, as `redis-cli --rdb` does: `AUTH`,
//! `REPLCONF rdb-only 1`, `REPLCONF capa eof`, `PSYNC ? -1`; the reply
//! `+FULLRESYNC <replid> <offset>` gives the position of the snapshot, then
//! the RDB arrives either as `$<len>\r\n<payload>` (disk-based sync) or as
//! `$EOF:<40-byte mark>\r\n<payload><mark>` (diskless sync). The payload is
//! streamed through zstd and sha256 into any `AsyncWrite`, never held whole
//! in memory.
//!
//! Restore reads a compressed artifact, decompresses it into a temporary file
//! inside the (empty) data directory and verifies the sha256 of the artifact
//! before anything is put in place. It then installs the dataset twice over
//! the same inode: `dump.rdb` (loaded by a server with `appendonly no`) and
//! the base file of a multi-part AOF, `appendonlydir/appendonly.aof.1.base.rdb`
//! with its manifest (loaded by a server with `appendonly yes`, which would
//! otherwise ignore `dump.rdb` and start empty). This assumes the default
//! `appenddirname`/`appendfilename`. Restore refuses a data directory that
//! holds anything but `lost+found`, so it never mixes with an existing AOF.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_compression::tokio::bufread::ZstdDecoder;
use async_compression::tokio::write::ZstdEncoder;
use sha2::{Digest, Sha256};
use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader,
};
use tokio::net::TcpStream;
use tracing::Instrument;

use crate::api::MemberStatus;
use crate::backup::hashing::{HashingReader, HashingWriter};
use crate::engine::{Credentials, Member};

/// Errors of backup and restore, with what was being done.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("connecting to {addr}: {source}")]
    Connect { addr: String, source: io::Error },
    #[error("timed out {0}")]
    Timeout(&'static str),
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        source: io::Error,
    },
    #[error("the server refused {command}: {reply}")]
    Refused {
        command: &'static str,
        reply: String,
    },
    #[error("unexpected reply during {during}: {reply:?}")]
    Protocol { during: &'static str, reply: String },
    #[error("the RDB stream ended after {got} of {expected} bytes")]
    Truncated { got: u64, expected: u64 },
    #[error("the RDB stream ended before its end mark after {0} bytes")]
    MissingEndMark(u64),
    #[error("the payload is not an RDB file (missing REDIS magic)")]
    NotRdb,
    #[error("data directory {0} is not empty (found {1}); refusing to restore over existing data")]
    DataDirNotEmpty(PathBuf, String),
    #[error(
        "checksum mismatch: the artifact's sha256 is {actual}, expected {expected}; nothing was restored"
    )]
    ChecksumMismatch { expected: String, actual: String },
    #[error("decompressing the artifact: {0}")]
    Decompress(io::Error),
    #[error("no member can serve a backup: {0}")]
    NoSource(String),
}

fn io_err(what: &'static str) -> impl FnOnce(io::Error) -> BackupError {
    move |source| BackupError::Io { what, source }
}

/// Where to take the backup from.
#[derive(Clone)]
pub struct BackupSource {
    pub host: String,
    pub port: u16,
    pub password: Option<String>,
}

impl std::fmt::Debug for BackupSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackupSource")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Tunables of a backup.
#[derive(Clone, Copy, Debug)]
pub struct BackupOptions {
    /// zstd level (default 3).
    pub zstd_level: i32,
    /// Connect timeout (default 5 s).
    pub connect_timeout: Duration,
    /// Longest silence tolerated while waiting for or receiving the RDB (default 120 s).
    pub idle_timeout: Duration,
}

impl Default for BackupOptions {
    fn default() -> Self {
        Self {
            zstd_level: 3,
            connect_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(120),
        }
    }
}

/// What a backup produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupReport {
    /// Bytes of RDB received.
    pub raw_bytes: u64,
    /// Bytes of compressed artifact written to the sink.
    pub compressed_bytes: u64,
    /// Hex sha256 of the compressed artifact.
    pub sha256: String,
    /// Replication ID and offset of the snapshot (`+FULLRESYNC`).
    pub replid: String,
    pub offset: i64,
}

/// What a restore installed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreReport {
    pub raw_bytes: u64,
    pub compressed_bytes: u64,
    pub sha256: String,
    /// The `dump.rdb` written.
    pub path: PathBuf,
}

/// The source of a backup from the last reported member statuses: the closest
/// healthy replica, else the primary, dialled at its pod IP with the
/// cluster's password.
pub fn backup_source_for(
    members: &[Member],
    statuses: &[MemberStatus],
    credentials: &Credentials,
) -> Result<BackupSource, BackupError> {
    let ordinal = crate::backup::member::pick_member(statuses)
        .ok_or_else(|| BackupError::NoSource("no reachable replica or primary".into()))?;
    let m = members
        .iter()
        .find(|m| m.ordinal == ordinal)
        .ok_or_else(|| BackupError::NoSource(format!("ordinal {ordinal} is not a member")))?;
    let host = m
        .address
        .clone()
        .ok_or_else(|| BackupError::NoSource(format!("{} has no IP address", m.pod)))?;
    Ok(BackupSource {
        host,
        port: m.port,
        password: credentials.get("password").map(str::to_string),
    })
}

fn resp(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

async fn timed<T>(
    d: Duration,
    what: &'static str,
    f: impl std::future::Future<Output = io::Result<T>>,
) -> Result<T, BackupError> {
    match tokio::time::timeout(d, f).await {
        Ok(r) => r.map_err(io_err(what)),
        Err(_) => Err(BackupError::Timeout(what)),
    }
}

/// Read one reply line, skipping the bare newlines a server sends as keepalives.
async fn read_line<R: AsyncBufRead + Unpin>(
    r: &mut R,
    idle: Duration,
    during: &'static str,
) -> Result<String, BackupError> {
    loop {
        let mut line = Vec::new();
        let n = timed(idle, during, r.read_until(b'\n', &mut line)).await?;
        if n == 0 {
            return Err(BackupError::Protocol {
                during,
                reply: "connection closed".into(),
            });
        }
        let s = String::from_utf8_lossy(&line).trim_end().to_string();
        if !s.is_empty() {
            return Ok(s);
        }
    }
}

async fn command(
    r: &mut BufReader<TcpStream>,
    args: &[&[u8]],
    name: &'static str,
    idle: Duration,
) -> Result<String, BackupError> {
    timed(idle, name, r.get_mut().write_all(&resp(args))).await?;
    let line = read_line(r, idle, name).await?;
    if let Some(err) = line.strip_prefix('-') {
        return Err(BackupError::Refused {
            command: name,
            reply: err.to_string(),
        });
    }
    Ok(line)
}

/// Position of `mark` in `hay`.
fn find_mark(hay: &[u8], mark: &[u8]) -> Option<usize> {
    let first = *mark.first()?;
    let mut start = 0;
    while start + mark.len() <= hay.len() {
        let i = start
            + hay[start..=hay.len() - mark.len()]
                .iter()
                .position(|b| *b == first)?;
        if &hay[i..i + mark.len()] == mark {
            return Some(i);
        }
        start = i + 1;
    }
    None
}

/// Stream a snapshot of `source` into `sink`, zstd-compressed, and report its
/// size, sha256 and replication position. The sink is shut down at the end, so
/// an upload writer can finalise. Errors if the stream ends early.
pub async fn backup_rdb<W: AsyncWrite + Unpin>(
    source: &BackupSource,
    sink: W,
    opts: &BackupOptions,
) -> Result<BackupReport, BackupError> {
    let span = tracing::info_span!("redis_backup", host = %source.host, port = source.port);
    backup_inner(source, sink, opts).instrument(span).await
}

async fn backup_inner<W: AsyncWrite + Unpin>(
    source: &BackupSource,
    sink: W,
    opts: &BackupOptions,
) -> Result<BackupReport, BackupError> {
    let addr = format!("{}:{}", source.host, source.port);
    let idle = opts.idle_timeout;
    let stream = match tokio::time::timeout(opts.connect_timeout, TcpStream::connect(&addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(source)) => return Err(BackupError::Connect { addr, source }),
        Err(_) => return Err(BackupError::Timeout("connecting to the backup source")),
    };
    let mut r = BufReader::with_capacity(256 * 1024, stream);
    if let Some(pw) = &source.password {
        command(&mut r, &[b"AUTH", pw.as_bytes()], "AUTH", idle).await?;
    }
    // Servers before 7.0 do not know rdb-only; they just keep streaming after the RDB.
    if let Err(e) = command(
        &mut r,
        &[b"REPLCONF", b"rdb-only", b"1"],
        "REPLCONF rdb-only",
        idle,
    )
    .await
    {
        tracing::debug!(error = %e, "server does not support rdb-only");
    }
    command(
        &mut r,
        &[b"REPLCONF", b"capa", b"eof"],
        "REPLCONF capa",
        idle,
    )
    .await?;
    let reply = command(&mut r, &[b"PSYNC", b"?", b"-1"], "PSYNC", idle).await?;
    let mut parts = reply.split_whitespace();
    let (replid, offset) = match (
        parts.next(),
        parts.next(),
        parts.next().and_then(|o| o.parse::<i64>().ok()),
    ) {
        (Some("+FULLRESYNC"), Some(id), Some(off)) => (id.to_string(), off),
        _ => {
            return Err(BackupError::Protocol {
                during: "PSYNC",
                reply,
            });
        }
    };
    let header = read_line(&mut r, idle, "waiting for the RDB").await?;
    let mode = if let Some(mark) = header.strip_prefix("$EOF:") {
        if mark.len() != 40 {
            return Err(BackupError::Protocol {
                during: "RDB header",
                reply: header,
            });
        }
        Payload::Eof(mark.as_bytes().to_vec())
    } else if let Some(len) = header.strip_prefix('$').and_then(|l| l.parse::<u64>().ok()) {
        Payload::Len(len)
    } else {
        return Err(BackupError::Protocol {
            during: "RDB header",
            reply: header,
        });
    };
    tracing::info!(%replid, offset, "receiving RDB");
    let mut enc = ZstdEncoder::with_quality(
        HashingWriter {
            inner: sink,
            hasher: Sha256::new(),
            bytes: 0,
        },
        async_compression::Level::Precise(opts.zstd_level),
    );
    let raw = copy_payload(&mut r, &mut enc, mode, idle).await?;
    enc.shutdown()
        .await
        .map_err(io_err("finishing the compressed artifact"))?;
    let hw = enc.into_inner();
    let report = BackupReport {
        raw_bytes: raw,
        compressed_bytes: hw.bytes,
        sha256: hex::encode(hw.hasher.finalize()),
        replid,
        offset,
    };
    tracing::info!(raw = report.raw_bytes, compressed = report.compressed_bytes, sha256 = %report.sha256, "backup complete");
    Ok(report)
}

enum Payload {
    Len(u64),
    Eof(Vec<u8>),
}

/// Copy the RDB payload to `out`, checking the magic, and return its size.
async fn copy_payload<R: AsyncBufRead + Unpin, W: AsyncWrite + Unpin>(
    r: &mut R,
    out: &mut W,
    mode: Payload,
    idle: Duration,
) -> Result<u64, BackupError> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut written: u64 = 0;
    let mut checked = false;
    let emit = |data: &[u8], written: &mut u64, checked: &mut bool| -> Result<(), BackupError> {
        if !*checked && *written == 0 && !data.is_empty() {
            if data.len() < 5 || &data[..5] != b"REDIS" {
                return Err(BackupError::NotRdb);
            }
            *checked = true;
        }
        *written += data.len() as u64;
        Ok(())
    };
    match mode {
        Payload::Len(len) => {
            while written < len {
                let want =
                    usize::try_from((len - written).min(buf.len() as u64)).unwrap_or(buf.len());
                let n = timed(idle, "receiving the RDB", r.read(&mut buf[..want])).await?;
                if n == 0 {
                    return Err(BackupError::Truncated {
                        got: written,
                        expected: len,
                    });
                }
                emit(&buf[..n], &mut written, &mut checked)?;
                timed(idle, "writing the artifact", out.write_all(&buf[..n])).await?;
            }
        }
        Payload::Eof(mark) => {
            // Keep the last mark.len() bytes back until we know they are not the mark.
            let mut pending: Vec<u8> = Vec::with_capacity(buf.len() + mark.len());
            loop {
                let n = timed(idle, "receiving the RDB", r.read(&mut buf)).await?;
                if n == 0 {
                    return Err(BackupError::MissingEndMark(written + pending.len() as u64));
                }
                let search_from = pending.len().saturating_sub(mark.len() - 1);
                pending.extend_from_slice(&buf[..n]);
                if let Some(i) = find_mark(&pending[search_from..], &mark) {
                    let end = search_from + i;
                    emit(&pending[..end], &mut written, &mut checked)?;
                    timed(idle, "writing the artifact", out.write_all(&pending[..end])).await?;
                    break;
                }
                let keep = mark.len() - 1;
                if pending.len() > keep {
                    let cut = pending.len() - keep;
                    emit(&pending[..cut], &mut written, &mut checked)?;
                    timed(idle, "writing the artifact", out.write_all(&pending[..cut])).await?;
                    pending.drain(..cut);
                }
            }
        }
    }
    Ok(written)
}

/// Put the verified dataset in place: the AOF base (same inode when the
/// filesystem allows) with its manifest, then `dump.rdb` by rename.
async fn install(tmp: &Path, dump: &Path, aof_dir: &Path) -> Result<(), BackupError> {
    tokio::fs::create_dir(aof_dir)
        .await
        .map_err(io_err("creating appendonlydir"))?;
    let base = aof_dir.join("appendonly.aof.1.base.rdb");
    if tokio::fs::hard_link(tmp, &base).await.is_err() {
        tokio::fs::copy(tmp, &base)
            .await
            .map_err(io_err("writing the AOF base file"))?;
    }
    tokio::fs::write(
        aof_dir.join("appendonly.aof.manifest"),
        b"file appendonly.aof.1.base.rdb seq 1 type b\n",
    )
    .await
    .map_err(io_err("writing the AOF manifest"))?;
    tokio::fs::rename(tmp, dump)
        .await
        .map_err(io_err("installing dump.rdb"))
}

/// Removes a file on drop unless disarmed.
struct TempGuard(Option<PathBuf>);

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Restore a compressed artifact into the empty data directory `dir`: verify
/// its sha256 against `expected_sha256` before anything is put in place, then
/// install `dump.rdb` and the AOF base + manifest (see the module docs).
/// On any error the directory is left as it was.
pub async fn restore_rdb<R: AsyncRead + Unpin>(
    artifact: R,
    expected_sha256: &str,
    dir: &Path,
) -> Result<RestoreReport, BackupError> {
    let span = tracing::info_span!("redis_restore", dir = %dir.display());
    restore_inner(artifact, expected_sha256, dir)
        .instrument(span)
        .await
}

async fn restore_inner<R: AsyncRead + Unpin>(
    artifact: R,
    expected_sha256: &str,
    dir: &Path,
) -> Result<RestoreReport, BackupError> {
    let mut entries = tokio::fs::read_dir(dir)
        .await
        .map_err(io_err("reading the data directory"))?;
    while let Some(e) = entries
        .next_entry()
        .await
        .map_err(io_err("reading the data directory"))?
    {
        let name = e.file_name().to_string_lossy().to_string();
        if name != "lost+found" {
            return Err(BackupError::DataDirNotEmpty(dir.to_path_buf(), name));
        }
    }
    let tmp = dir.join(".ordinal-restore.rdb.tmp");
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .await
        .map_err(io_err("creating the temporary restore file"))?;
    let mut guard = TempGuard(Some(tmp.clone()));
    let hashing = HashingReader {
        inner: artifact,
        hasher: Sha256::new(),
        bytes: 0,
    };
    let mut dec = ZstdDecoder::new(BufReader::with_capacity(256 * 1024, hashing));
    dec.multiple_members(true);
    let mut buf = vec![0u8; 256 * 1024];
    let mut raw: u64 = 0;
    let decoded: Result<(), BackupError> = async {
        loop {
            let n = dec.read(&mut buf).await.map_err(BackupError::Decompress)?;
            if n == 0 {
                return Ok(());
            }
            if raw == 0 && (n < 5 || &buf[..5] != b"REDIS") {
                return Err(BackupError::NotRdb);
            }
            raw += n as u64;
            file.write_all(&buf[..n])
                .await
                .map_err(io_err("writing the temporary restore file"))?;
        }
    }
    .await;
    // Hash the whole artifact, whatever the decoder made of it.
    let mut hashing = dec.into_inner().into_inner();
    tokio::io::copy(&mut hashing, &mut tokio::io::sink())
        .await
        .map_err(io_err("reading the artifact"))?;
    let actual = hex::encode(hashing.hasher.finalize());
    if !actual.eq_ignore_ascii_case(expected_sha256.trim()) {
        return Err(BackupError::ChecksumMismatch {
            expected: expected_sha256.trim().to_string(),
            actual,
        });
    }
    decoded?;
    file.sync_all()
        .await
        .map_err(io_err("syncing the temporary restore file"))?;
    drop(file);
    let dump = dir.join("dump.rdb");
    let aof_dir = dir.join("appendonlydir");
    if let Err(e) = install(&tmp, &dump, &aof_dir).await {
        // Leave the directory as it was: no half-installed AOF.
        let _ = tokio::fs::remove_dir_all(&aof_dir).await;
        return Err(e);
    }
    guard.0 = None;
    if let Ok(d) = tokio::fs::File::open(dir).await {
        let _ = d.sync_all().await;
    }
    tracing::info!(raw, compressed = hashing.bytes, "restore complete");
    Ok(RestoreReport {
        raw_bytes: raw,
        compressed_bytes: hashing.bytes,
        sha256: actual,
        path: dump,
    })
}

/// Keys held by a running server once it finished loading its data (None
/// while it is still loading).
pub async fn loaded_keys(source: &BackupSource) -> Result<Option<i64>, crate::redis::RedisError> {
    let timeouts = crate::redis::observe::Timeouts {
        connect: Duration::from_secs(2),
        command: Duration::from_secs(10),
    };
    let password = source.password.clone().unwrap_or_default();
    let mut c =
        crate::redis::conn::Conn::connect(&source.host, source.port, &password, timeouts).await?;
    let persistence: String = redis::cmd("INFO")
        .arg("persistence")
        .query_async(&mut c)
        .await
        .map_err(|e| crate::redis::RedisError::command("INFO persistence", e))?;
    if persistence.lines().any(|l| l.trim() == "loading:1") {
        return Ok(None);
    }
    let keyspace: String = redis::cmd("INFO")
        .arg("keyspace")
        .query_async(&mut c)
        .await
        .map_err(|e| crate::redis::RedisError::command("INFO keyspace", e))?;
    Ok(Some(keyspace_keys(&keyspace)))
}

/// Sum of `keys=` over the databases of `INFO keyspace`.
pub fn keyspace_keys(info: &str) -> i64 {
    info.lines()
        .filter(|l| l.starts_with("db"))
        .filter_map(|l| {
            l.split(',').find_map(|f| {
                f.split_once(':')
                    .map(|(_, r)| r)
                    .unwrap_or(f)
                    .strip_prefix("keys=")
            })
        })
        .filter_map(|n| n.trim().parse::<i64>().ok())
        .sum()
}

/// Stop a throwaway server without saving (best effort).
pub async fn shutdown_nosave(source: &BackupSource) {
    let timeouts = crate::redis::observe::Timeouts {
        connect: Duration::from_secs(2),
        command: Duration::from_secs(5),
    };
    let password = source.password.clone().unwrap_or_default();
    if let Ok(mut c) =
        crate::redis::conn::Conn::connect(&source.host, source.port, &password, timeouts).await
    {
        let _: redis::RedisResult<()> = redis::cmd("SHUTDOWN")
            .arg("NOSAVE")
            .query_async(&mut c)
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyspace_counts_every_database() {
        let info = "# Keyspace\r\ndb0:keys=1000,expires=3,avg_ttl=0\r\ndb3:keys=25,expires=0,avg_ttl=0\r\n";
        assert_eq!(keyspace_keys(info), 1025);
        assert_eq!(keyspace_keys("# Keyspace\r\n"), 0);
    }

    #[test]
    fn finds_the_end_mark_anywhere() {
        let mark = b"0123456789012345678901234567890123456789";
        let mut hay = b"REDIS0010xx0".to_vec();
        hay.extend_from_slice(mark);
        assert_eq!(find_mark(&hay, mark), Some(12));
        assert_eq!(find_mark(&hay[..40], mark), None);
        assert_eq!(find_mark(b"", mark), None);
    }

    fn payload(len: usize) -> Vec<u8> {
        let mut p = b"REDIS0010".to_vec();
        p.extend((0..len).map(|i| (i * 7 % 251) as u8));
        p
    }

    #[tokio::test]
    async fn eof_payload_with_the_mark_split_across_reads() {
        let mark = b"abcdefghijabcdefghijabcdefghijabcdefghij".to_vec();
        let rdb = payload(10_000);
        let mut wire = rdb.clone();
        wire.extend_from_slice(&mark);
        wire.extend_from_slice(b"+trailing replication stream");
        for cap in [1, 7, 39, 40, 41, 4096] {
            let mut r = BufReader::with_capacity(cap, &wire[..]);
            let mut out = Vec::new();
            let n = copy_payload(
                &mut r,
                &mut out,
                Payload::Eof(mark.clone()),
                Duration::from_secs(5),
            )
            .await
            .unwrap();
            assert_eq!(n as usize, rdb.len(), "read size {cap}");
            assert_eq!(out, rdb, "read size {cap}");
        }
    }

    #[tokio::test]
    async fn payloads_that_end_early_are_errors() {
        let mark = b"abcdefghijabcdefghijabcdefghijabcdefghij".to_vec();
        let rdb = payload(1000);
        let mut r = BufReader::new(&rdb[..]);
        let err = copy_payload(
            &mut r,
            &mut Vec::new(),
            Payload::Eof(mark),
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, BackupError::MissingEndMark(_)), "{err}");

        let mut r = BufReader::new(&rdb[..]);
        let err = copy_payload(
            &mut r,
            &mut Vec::new(),
            Payload::Len(5000),
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(
                err,
                BackupError::Truncated {
                    got: 1009,
                    expected: 5000
                }
            ),
            "{err}"
        );

        let mut r = BufReader::new(&rdb[..]);
        let mut out = Vec::new();
        let n = copy_payload(&mut r, &mut out, Payload::Len(500), Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!((n, &out[..]), (500, &rdb[..500]));

        let junk = b"NOTREDIS-at-all".to_vec();
        let mut r = BufReader::new(&junk[..]);
        let err = copy_payload(
            &mut r,
            &mut Vec::new(),
            Payload::Len(15),
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, BackupError::NotRdb), "{err}");
    }

    #[tokio::test]
    async fn keepalive_newlines_are_skipped() {
        let wire = b"\n\n\r\n+FULLRESYNC abc 42\r\n".to_vec();
        let mut r = BufReader::new(&wire[..]);
        let line = read_line(&mut r, Duration::from_secs(1), "test")
            .await
            .unwrap();
        assert_eq!(line, "+FULLRESYNC abc 42");
    }

    #[test]
    fn resp_encoding() {
        assert_eq!(
            resp(&[b"PSYNC", b"?", b"-1"]),
            b"*3\r\n$5\r\nPSYNC\r\n$1\r\n?\r\n$2\r\n-1\r\n".to_vec()
        );
    }
}
