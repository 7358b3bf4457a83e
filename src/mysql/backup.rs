//! Streamed, consistent, parallel logical backup and restore over
//! `mysql_async`, and re-seeding of a replica from the primary.
//!
//! # Consistency
//! One coordinator connection takes `FLUSH TABLES WITH READ LOCK`, records the
//! GTID position (`@@gtid_binlog_pos` on MariaDB, `@@gtid_executed` on MySQL),
//! while N worker connections each run `START TRANSACTION WITH CONSISTENT
//! SNAPSHOT`; then `UNLOCK TABLES`. Every worker sees exactly the data at the
//! recorded position; writes continue meanwhile. Tables whose primary key is a
//! single integer column are split into key ranges dumped in parallel.
//!
//! # Artifact format (version 1)
//! The artifact is one zstd stream. Decompressed, it is a sequence of frames:
//! `kind: u8`, `len: u32 little endian`, `payload: len bytes`. Kinds:
//! * `1` header: UTF-8 `key=value` lines (`format=1`, `flavor`, `gtid`,
//!   `binlog_state` (MariaDB: every originating server's last GTID), `created`);
//! * `2` schema: `database` `\n` statement (CREATE DATABASE/TABLE/VIEW/routine),
//!   applied in order before any data;
//! * `3` data: one complete multi-row `INSERT INTO db.table VALUES …` statement;
//!   data frames are independent and applied in parallel;
//! * `4` post-data: `database` `\n` statement (triggers), applied after all data;
//! * `5` rows: `database` `\n` `table` `\n` then rows in `LOAD DATA` text form
//!   (tab-separated, `\N` for NULL, backslash escapes, raw bytes of the
//!   column's own character set, read over a `binary` connection), loaded
//!   in parallel with `LOAD DATA LOCAL INFILE … CHARACTER SET binary`;
//! * `255` trailer: `frames=N`, `rows=N`, `sha256=<hex>` lines, where sha256 is
//!   the digest of the concatenated sha256 digests of every frame before the
//!   trailer (each over its decompressed kind, length and payload).
//!
//! Each frame is compressed as its own zstd frame (the concatenation is a
//! valid zstd stream, `zstd -d` reads it), so workers compress in parallel.
//!
//! The sha256 returned by [`backup`] (and to be recorded in the Backup status)
//! covers the stored (compressed) artifact. [`verify`] checks both digests and
//! the trailer (so truncation is detected); [`restore_verified`] checks the
//! stored sha256 first and applies nothing when it differs, and the load
//! checks the structure, content digest and trailer as it reads.
//!
//! Not in the dump: the `mysql`, `sys`, `information_schema` and
//! `performance_schema` schemas (accounts and grants are carried as
//! `CREATE USER IF NOT EXISTS` / `GRANT` statements, except root, system
//! and operator accounts; roles are not), and scheduled events.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_compression::tokio::bufread::ZstdDecoder;
use mysql_async::consts::ColumnType;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row, Value};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::{Mutex, mpsc};

use super::flavor::{Dialect, quote_ident, quote_str};
use super::observe::{Login, connect, exec, rows, value_str};
use super::{Creds, MySqlEngine, MySqlError};
use crate::api::MySqlFlavor;
use crate::backup::hashing::{HashingReader, HashingWriter};
use crate::engine::Member;

const KIND_HEADER: u8 = 1;
const KIND_SCHEMA: u8 = 2;
const KIND_DATA: u8 = 3;
const KIND_POST: u8 = 4;
const KIND_ROWS: u8 = 5;
const KIND_TRAILER: u8 = 255;
/// Largest frame accepted when reading (a corrupted length is refused early).
const MAX_FRAME: usize = 64 << 20;
const SYSTEM_SCHEMAS: &str = "'mysql', 'information_schema', 'performance_schema', 'sys'";

/// A server to dump from or restore into.
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub login: Login,
    pub flavor: MySqlFlavor,
}

/// Tuning of a backup.
#[derive(Clone, Debug)]
pub struct BackupOptions {
    /// Parallel snapshot connections (default 4).
    pub workers: usize,
    /// Target rows per key-range chunk (default 100 000).
    pub chunk_rows: u64,
    /// Target size of one INSERT statement in bytes (default 1 MiB).
    pub statement_bytes: usize,
    /// zstd level (default 1: on row text it compresses about as well as
    /// level 3 at twice the speed, and compression is most of the dump's
    /// client CPU).
    pub zstd_level: i32,
    /// Encoding of table data (default `LoadData`, the fastest to restore).
    pub data_format: DataFormat,
    /// Accounts (user names) not carried in the dump: root and the system
    /// accounts (created per cluster from its own Secret) and the operator's
    /// own users (re-created by the engine with the current credentials).
    pub exclude_users: Vec<String>,
    pub connect_timeout: Duration,
}

impl Default for BackupOptions {
    fn default() -> Self {
        Self {
            workers: 4,
            chunk_rows: 100_000,
            statement_bytes: 1 << 20,
            zstd_level: 1,
            data_format: DataFormat::LoadData,
            exclude_users: [
                "root",
                "mariadb.sys",
                "mysql.sys",
                "mysql.session",
                "mysql.infoschema",
                "PUBLIC",
                "ordinal",
                "repl",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// How table rows are stored in the artifact.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataFormat {
    /// `LOAD DATA` text of the raw column bytes (frame kind 5).
    LoadData,
    /// Multi-row `INSERT` statements (frame kind 3), replayable by any client.
    Insert,
}

/// Result of a backup.
#[derive(Clone, Debug, PartialEq)]
pub struct BackupSummary {
    /// Bytes of the stored (compressed) artifact.
    pub size: u64,
    /// Decompressed bytes.
    pub raw_size: u64,
    /// sha256 of the stored artifact, hex.
    pub sha256: String,
    /// GTID position of the snapshot.
    pub gtid: String,
    pub tables: u64,
    pub rows: u64,
    pub duration: Duration,
}

/// What [`verify`] found in an artifact.
#[derive(Clone, Debug, PartialEq)]
pub struct ArtifactInfo {
    pub sha256: String,
    pub size: u64,
    pub gtid: String,
    pub flavor: String,
    pub frames: u64,
    pub rows: u64,
}

/// Tuning of a restore.
#[derive(Clone, Debug)]
pub struct RestoreOptions {
    /// Parallel loading connections (default 2: on the 2-core benchmark machine
    /// more loaders only contend for the server CPU).
    pub workers: usize,
    /// Set the server's GTID state to the backup's position afterwards
    /// (default true), so it can serve as a replica or a new primary.
    pub set_gtid: bool,
    /// Refuse a target that already holds user schemas (default true).
    pub require_empty: bool,
    pub connect_timeout: Duration,
}

impl Default for RestoreOptions {
    fn default() -> Self {
        Self {
            workers: 2,
            set_gtid: true,
            require_empty: true,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// Result of a restore.
#[derive(Clone, Debug, PartialEq)]
pub struct RestoreSummary {
    pub gtid: String,
    pub rows: u64,
    pub statements: u64,
    pub duration: Duration,
}

fn io_err(context: &str) -> impl FnOnce(std::io::Error) -> MySqlError + '_ {
    move |source| MySqlError::Io {
        context: context.to_string(),
        source,
    }
}

fn sql_err(context: impl Into<String>) -> impl FnOnce(mysql_async::Error) -> MySqlError {
    let context = context.into();
    move |source| MySqlError::Sql { context, source }
}

async fn open(ep: &Endpoint, timeout: Duration) -> Result<Conn, MySqlError> {
    connect(&ep.host, ep.port, &ep.login, timeout).await
}

/// Whether the server accepts a login (used to wait for a throwaway instance).
pub async fn ping(ep: &Endpoint) -> Result<(), MySqlError> {
    let c = open(ep, Duration::from_secs(2)).await?;
    let _ = c.disconnect().await;
    Ok(())
}

/// Stop a throwaway server (best effort: the connection drops as it goes).
pub async fn shutdown(ep: &Endpoint) {
    if let Ok(mut c) = open(ep, Duration::from_secs(2)).await {
        let _ = exec(&mut c, "SHUTDOWN", Duration::from_secs(10)).await;
    }
}

/// Render one text-protocol value as a SQL literal.
fn push_literal(out: &mut String, v: &Value, ty: ColumnType, binary: bool) {
    match v {
        Value::NULL => out.push_str("NULL"),
        Value::Bytes(b) => {
            let numeric = matches!(
                ty,
                ColumnType::MYSQL_TYPE_TINY
                    | ColumnType::MYSQL_TYPE_SHORT
                    | ColumnType::MYSQL_TYPE_LONG
                    | ColumnType::MYSQL_TYPE_INT24
                    | ColumnType::MYSQL_TYPE_LONGLONG
                    | ColumnType::MYSQL_TYPE_DECIMAL
                    | ColumnType::MYSQL_TYPE_NEWDECIMAL
                    | ColumnType::MYSQL_TYPE_FLOAT
                    | ColumnType::MYSQL_TYPE_DOUBLE
                    | ColumnType::MYSQL_TYPE_YEAR
            );
            if numeric
                && b.iter().all(|c| c.is_ascii_digit() || b"-+.eE".contains(c))
                && !b.is_empty()
            {
                out.push_str(&String::from_utf8_lossy(b));
            } else if binary || ty == ColumnType::MYSQL_TYPE_BIT {
                if b.is_empty() {
                    out.push_str("''");
                } else {
                    out.push_str("0x");
                    out.push_str(&hex::encode(b));
                }
            } else {
                match std::str::from_utf8(b) {
                    Ok(s) => {
                        out.push('\'');
                        for c in s.chars() {
                            match c {
                                '\'' => out.push_str("\\'"),
                                '\\' => out.push_str("\\\\"),
                                '\0' => out.push_str("\\0"),
                                '\n' => out.push_str("\\n"),
                                '\r' => out.push_str("\\r"),
                                '\x1a' => out.push_str("\\Z"),
                                c => out.push(c),
                            }
                        }
                        out.push('\'');
                    }
                    Err(_) => {
                        out.push_str("0x");
                        out.push_str(&hex::encode(b));
                    }
                }
            }
        }
        other => out.push_str(&other.as_sql(false)),
    }
}

/// A unit of dump work.
#[derive(Clone, Debug)]
struct Chunk {
    db: String,
    table: String,
    /// `WHERE` clause for a key range.
    filter: Option<String>,
}

struct Frame {
    kind: u8,
    payload: Vec<u8>,
}

/// A frame compressed as its own zstd frame, with the sha256 of its
/// decompressed bytes (frame header + payload).
struct Sealed {
    zst: Vec<u8>,
    digest: [u8; 32],
    raw_len: u64,
}

/// What producers send the artifact writer.
enum Msg {
    /// A frame being compressed and hashed on the blocking pool: the
    /// producer goes on reading rows meanwhile, the writer waits for it.
    Frame(tokio::task::JoinHandle<std::io::Result<Sealed>>),
    /// Everything was sent: write the trailer (carries the row count).
    Done(u64),
}

thread_local! {
    /// One compression context per blocking-pool thread, kept across frames
    /// (a fresh context per frame costs its allocation and table setup).
    static COMPRESSOR: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { std::cell::RefCell::new(None) };
}

fn compress(raw: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|(l, _)| *l != level) {
            *slot = Some((level, zstd::bulk::Compressor::new(level)?));
        }
        match slot.as_mut() {
            Some((_, c)) => c.compress(raw),
            None => zstd::bulk::compress(raw, level),
        }
    })
}

/// Hash and compress a frame laid out as stored (kind, length, payload).
fn seal_raw(raw: &[u8], level: i32) -> std::io::Result<Sealed> {
    let digest: [u8; 32] = Sha256::digest(raw).into();
    Ok(Sealed {
        zst: compress(raw, level)?,
        digest,
        raw_len: raw.len() as u64,
    })
}

/// A frame laid out as stored: kind, length, payload.
fn frame_raw(f: &Frame) -> Vec<u8> {
    let mut raw = frame_bytes(f);
    raw.reserve_exact(f.payload.len());
    raw.extend_from_slice(&f.payload);
    raw
}

fn seal(f: &Frame, level: i32) -> std::io::Result<Sealed> {
    seal_raw(&frame_raw(f), level)
}

/// Compress and hash a frame on the blocking pool (in parallel across
/// frames and workers) and hand it to the writer at once, which keeps the
/// frames in order; waits only when the writer is behind.
async fn send_frame(tx: &mpsc::Sender<Msg>, f: Frame, level: i32) -> Result<(), MySqlError> {
    send_raw(tx, frame_raw(&f), level).await
}

/// [`send_frame`] for a frame already laid out as stored (see [`RowsFrame`]).
async fn send_raw(tx: &mpsc::Sender<Msg>, raw: Vec<u8>, level: i32) -> Result<(), MySqlError> {
    let sealing = tokio::task::spawn_blocking(move || seal_raw(&raw, level));
    tx.send(Msg::Frame(sealing))
        .await
        .map_err(|_| MySqlError::Unexpected("artifact writer stopped".into()))
}

/// A frame built in place: its kind and a length placeholder first, the
/// payload appended, the length filled in when it is sent, so the payload
/// is never copied to prepend the frame header.
struct RowsFrame {
    raw: Vec<u8>,
    /// Bytes of the frame header and the payload's own head (database and
    /// table names): a frame this long holds no rows.
    empty_len: usize,
}

impl RowsFrame {
    fn new(kind: u8, head: &[u8], capacity: usize) -> Self {
        let mut raw = Vec::with_capacity(capacity + 5 + head.len());
        raw.push(kind);
        raw.extend_from_slice(&[0; 4]);
        raw.extend_from_slice(head);
        Self {
            empty_len: raw.len(),
            raw,
        }
    }

    fn has_rows(&self) -> bool {
        self.raw.len() > self.empty_len
    }

    /// The frame as stored, with its length filled in.
    fn finish(mut self) -> Vec<u8> {
        let len = (self.raw.len() - 5) as u32;
        self.raw[1..5].copy_from_slice(&len.to_le_bytes());
        self.raw
    }
}

fn schema_payload(db: &str, stmt: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(db.len() + stmt.len() + 1);
    v.extend_from_slice(db.as_bytes());
    v.push(b'\n');
    v.extend_from_slice(stmt.as_bytes());
    v
}

async fn first_string(
    conn: &mut Conn,
    sql: &str,
    col: usize,
) -> Result<Option<String>, MySqlError> {
    let r: Option<Row> = conn
        .query_first(sql)
        .await
        .map_err(sql_err(sql.to_string()))?;
    Ok(r.and_then(|r| r.as_ref(col).and_then(value_str)))
}

/// Schema frames (databases, tables, views, routines) and post-data frames (triggers).
async fn dump_schema(
    conn: &mut Conn,
) -> Result<(Vec<Frame>, Vec<Frame>, Vec<Chunk>, u64), MySqlError> {
    let mut pre = Vec::new();
    let mut post = Vec::new();
    let dbs: Vec<String> = conn
        .query(format!(
            "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME NOT IN ({SYSTEM_SCHEMAS}) ORDER BY SCHEMA_NAME"
        ))
        .await
        .map_err(sql_err("list schemas"))?;
    let mut tables_total = 0;
    let mut tables: Vec<(String, String)> = Vec::new();
    for db in &dbs {
        let q = format!("SHOW CREATE DATABASE {}", quote_ident(db));
        if let Some(s) = first_string(conn, &q, 1).await? {
            pre.push(Frame {
                kind: KIND_SCHEMA,
                payload: schema_payload("", &s),
            });
        }
        let list: Vec<(String, String)> = conn
            .query(format!(
                "SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES WHERE TABLE_SCHEMA = {} ORDER BY TABLE_NAME",
                quote_str(db)
            ))
            .await
            .map_err(sql_err("list tables"))?;
        let mut views = Vec::new();
        for (t, ty) in list {
            if ty == "VIEW" {
                views.push(t);
                continue;
            }
            if ty != "BASE TABLE" {
                continue;
            }
            let q = format!("SHOW CREATE TABLE {}.{}", quote_ident(db), quote_ident(&t));
            if let Some(s) = first_string(conn, &q, 1).await? {
                pre.push(Frame {
                    kind: KIND_SCHEMA,
                    payload: schema_payload(db, &s),
                });
                tables.push((db.clone(), t));
                tables_total += 1;
            }
        }
        for v in views {
            let q = format!("SHOW CREATE VIEW {}.{}", quote_ident(db), quote_ident(&v));
            if let Some(s) = first_string(conn, &q, 1).await? {
                pre.push(Frame {
                    kind: KIND_POST,
                    payload: schema_payload(db, &s),
                });
            }
        }
        let routines: Vec<(String, String)> = conn
            .query(format!(
                "SELECT ROUTINE_NAME, ROUTINE_TYPE FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = {} ORDER BY ROUTINE_NAME",
                quote_str(db)
            ))
            .await
            .map_err(sql_err("list routines"))?;
        for (name, ty) in routines {
            let kw = if ty == "FUNCTION" {
                "FUNCTION"
            } else {
                "PROCEDURE"
            };
            let q = format!(
                "SHOW CREATE {kw} {}.{}",
                quote_ident(db),
                quote_ident(&name)
            );
            if let Some(s) = first_string(conn, &q, 2).await? {
                post.push(Frame {
                    kind: KIND_POST,
                    payload: schema_payload(db, &s),
                });
            }
        }
        let triggers: Vec<String> = conn
            .query(format!(
                "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = {} ORDER BY TRIGGER_NAME",
                quote_str(db)
            ))
            .await
            .map_err(sql_err("list triggers"))?;
        for name in triggers {
            let q = format!(
                "SHOW CREATE TRIGGER {}.{}",
                quote_ident(db),
                quote_ident(&name)
            );
            if let Some(s) = first_string(conn, &q, 2).await? {
                post.push(Frame {
                    kind: KIND_POST,
                    payload: schema_payload(db, &s),
                });
            }
        }
    }
    // Views go after all tables (they may reference any of them).
    let (views, schema): (Vec<Frame>, Vec<Frame>) =
        pre.into_iter().partition(|f| f.kind == KIND_POST);
    let mut pre = schema;
    pre.extend(views.into_iter().map(|f| Frame {
        kind: KIND_SCHEMA,
        payload: f.payload,
    }));
    let chunks = tables
        .into_iter()
        .map(|(db, table)| Chunk {
            db,
            table,
            filter: None,
        })
        .collect();
    Ok((pre, post, chunks, tables_total))
}

/// Accounts and their grants, as post-data statements (applied after the
/// data, so grants on restored schemas resolve). Existing accounts on the
/// target are kept as they are (`CREATE USER IF NOT EXISTS`); roles are not
/// carried.
async fn dump_users(
    conn: &mut Conn,
    d: Dialect,
    exclude: &[String],
) -> Result<Vec<Frame>, MySqlError> {
    if d.flavor() == MySqlFlavor::MySQL {
        // caching_sha2_password hashes are binary: print them as hex
        // literals so the statement survives as text (MySQL 8.0.17+).
        exec(
            conn,
            "SET SESSION print_identified_with_as_hex = ON",
            Duration::from_secs(10),
        )
        .await?;
    }
    let users: Vec<(String, String)> = conn
        .query(d.list_users_query())
        .await
        .map_err(sql_err("list accounts"))?;
    let mut out = Vec::new();
    for (user, host) in users {
        if exclude.iter().any(|e| e == &user) || user.is_empty() {
            continue;
        }
        let account = format!("{}@{}", quote_str(&user), quote_str(&host));
        if let Some(create) = first_string(conn, &format!("SHOW CREATE USER {account}"), 0).await? {
            let stmt = match create.strip_prefix("CREATE USER ") {
                Some(rest) => format!("CREATE USER IF NOT EXISTS {rest}"),
                None => create,
            };
            out.push(Frame {
                kind: KIND_POST,
                payload: schema_payload("", &stmt),
            });
        }
        let grants: Vec<String> = conn
            .query(format!("SHOW GRANTS FOR {account}"))
            .await
            .map_err(sql_err("read grants"))?;
        for g in grants {
            out.push(Frame {
                kind: KIND_POST,
                payload: schema_payload("", &g),
            });
        }
    }
    Ok(out)
}

/// Split a table by ranges of its single-integer primary key.
async fn split(conn: &mut Conn, c: Chunk, chunk_rows: u64) -> Result<Vec<Chunk>, MySqlError> {
    let pk: Vec<(String, String)> = conn
        .query(format!(
            "SELECT k.COLUMN_NAME, c.DATA_TYPE FROM information_schema.KEY_COLUMN_USAGE k \
             JOIN information_schema.COLUMNS c ON c.TABLE_SCHEMA = k.TABLE_SCHEMA AND c.TABLE_NAME = k.TABLE_NAME AND c.COLUMN_NAME = k.COLUMN_NAME \
             WHERE k.TABLE_SCHEMA = {} AND k.TABLE_NAME = {} AND k.CONSTRAINT_NAME = 'PRIMARY' ORDER BY k.ORDINAL_POSITION",
            quote_str(&c.db),
            quote_str(&c.table)
        ))
        .await
        .map_err(sql_err("read primary key"))?;
    let int_types = ["tinyint", "smallint", "mediumint", "int", "bigint"];
    if pk.len() != 1 || !int_types.contains(&pk[0].1.to_ascii_lowercase().as_str()) {
        return Ok(vec![c]);
    }
    let col = quote_ident(&pk[0].0);
    let t = format!("{}.{}", quote_ident(&c.db), quote_ident(&c.table));
    let r: Option<(Option<i64>, Option<i64>, i64)> = conn
        .query_first(format!("SELECT MIN({col}), MAX({col}), COUNT(*) FROM {t}"))
        .await
        .map_err(sql_err(format!("range of {t}")))?;
    let Some((Some(lo), Some(hi), n)) = r else {
        return Ok(vec![c]);
    };
    let parts = ((n as u64) / chunk_rows.max(1)).max(1);
    if parts <= 1 {
        return Ok(vec![c]);
    }
    let span = ((hi as i128 - lo as i128) / parts as i128).max(1);
    let mut out = Vec::new();
    let mut start = lo as i128;
    while start <= hi as i128 {
        let end = (start + span).min(hi as i128 + 1);
        let filter = if end > hi as i128 {
            format!("{col} >= {start}")
        } else {
            format!("{col} >= {start} AND {col} < {end}")
        };
        out.push(Chunk {
            filter: Some(filter),
            ..c.clone()
        });
        if end > hi as i128 {
            break;
        }
        start = end;
    }
    Ok(out)
}

/// Dump one chunk as INSERT frames.
async fn dump_chunk(
    conn: &mut Conn,
    c: &Chunk,
    stmt_bytes: usize,
    format: DataFormat,
    level: i32,
    tx: &mpsc::Sender<Msg>,
) -> Result<u64, MySqlError> {
    if format == DataFormat::LoadData {
        return dump_chunk_rows(conn, c, stmt_bytes, level, tx).await;
    }
    let t = format!("{}.{}", quote_ident(&c.db), quote_ident(&c.table));
    let sql = match &c.filter {
        Some(f) => format!("SELECT * FROM {t} WHERE {f}"),
        None => format!("SELECT * FROM {t}"),
    };
    let mut qr = conn
        .query_iter(sql.as_str())
        .await
        .map_err(sql_err(sql.clone()))?;
    let cols: Vec<(ColumnType, bool)> = qr
        .columns_ref()
        .iter()
        .map(|c| (c.column_type(), c.character_set() == 63))
        .collect();
    let prefix = format!("INSERT INTO {t} VALUES ");
    let mut buf = String::with_capacity(stmt_bytes + 4096);
    let mut rows = 0u64;
    while let Some(row) = qr.next().await.map_err(sql_err(sql.clone()))? {
        if buf.is_empty() {
            buf.push_str(&prefix);
        } else {
            buf.push(',');
        }
        buf.push('(');
        for (i, (ty, bin)) in cols.iter().enumerate() {
            if i > 0 {
                buf.push(',');
            }
            match row.as_ref(i) {
                Some(v) => push_literal(&mut buf, v, *ty, *bin),
                None => buf.push_str("NULL"),
            }
        }
        buf.push(')');
        rows += 1;
        if buf.len() >= stmt_bytes {
            let payload =
                std::mem::replace(&mut buf, String::with_capacity(stmt_bytes + 4096)).into_bytes();
            send_frame(
                tx,
                Frame {
                    kind: KIND_DATA,
                    payload,
                },
                level,
            )
            .await?;
        }
    }
    if !buf.is_empty() {
        send_frame(
            tx,
            Frame {
                kind: KIND_DATA,
                payload: buf.into_bytes(),
            },
            level,
        )
        .await?;
    }
    Ok(rows)
}

/// Append a value in `LOAD DATA` text form.
fn push_tsv(out: &mut Vec<u8>, v: Option<&Value>) {
    match v {
        None | Some(Value::NULL) => out.extend_from_slice(b"\\N"),
        Some(Value::Bytes(b)) => {
            // Copy the runs between bytes that need an escape in one go.
            let mut start = 0;
            for (i, &c) in b.iter().enumerate() {
                let esc = match c {
                    b'\\' => b'\\',
                    b'\t' => b't',
                    b'\n' => b'n',
                    b'\r' => b'r',
                    0 => b'0',
                    _ => continue,
                };
                out.extend_from_slice(&b[start..i]);
                out.push(b'\\');
                out.push(esc);
                start = i + 1;
            }
            out.extend_from_slice(&b[start..]);
        }
        Some(other) => out.extend_from_slice(other.as_sql(true).trim_matches('\'').as_bytes()),
    }
}

/// Dump one chunk as `LOAD DATA` frames (the connection uses `SET NAMES binary`).
async fn dump_chunk_rows(
    conn: &mut Conn,
    c: &Chunk,
    frame_bytes_target: usize,
    level: i32,
    tx: &mpsc::Sender<Msg>,
) -> Result<u64, MySqlError> {
    let t = format!("{}.{}", quote_ident(&c.db), quote_ident(&c.table));
    let sql = match &c.filter {
        Some(f) => format!("SELECT * FROM {t} WHERE {f}"),
        None => format!("SELECT * FROM {t}"),
    };
    let mut qr = conn
        .query_iter(sql.as_str())
        .await
        .map_err(sql_err(sql.clone()))?;
    let ncols = qr.columns_ref().len();
    let head = format!("{}\n{}\n", c.db, c.table).into_bytes();
    // Room for the row that crosses the target, so the buffer rarely grows.
    let new_frame = || RowsFrame::new(KIND_ROWS, &head, frame_bytes_target + 64 * 1024);
    let mut frame = new_frame();
    let mut rows = 0u64;
    while let Some(row) = qr.next().await.map_err(sql_err(sql.clone()))? {
        let buf = &mut frame.raw;
        for i in 0..ncols {
            if i > 0 {
                buf.push(b'\t');
            }
            push_tsv(buf, row.as_ref(i));
        }
        buf.push(b'\n');
        rows += 1;
        if buf.len() >= frame_bytes_target {
            let full = std::mem::replace(&mut frame, new_frame());
            send_raw(tx, full.finish(), level).await?;
        }
    }
    if frame.has_rows() {
        send_raw(tx, frame.finish(), level).await?;
    }
    Ok(rows)
}

fn frame_bytes(f: &Frame) -> Vec<u8> {
    let mut v = Vec::with_capacity(5);
    v.push(f.kind);
    v.extend_from_slice(&(f.payload.len() as u32).to_le_bytes());
    v
}

/// Take a consistent, parallel, streamed logical backup of `source` into `sink`.
pub async fn backup<W>(
    source: &Endpoint,
    sink: W,
    opts: &BackupOptions,
) -> Result<BackupSummary, MySqlError>
where
    W: AsyncWrite + Unpin + Send,
{
    let started = Instant::now();
    let d = Dialect(source.flavor);
    let workers = opts.workers.max(1);
    let mut coord = open(source, opts.connect_timeout).await?;
    let mut conns = Vec::with_capacity(workers);
    for _ in 0..workers {
        conns.push(open(source, opts.connect_timeout).await?);
    }
    // Consistent snapshot across every worker at one GTID position.
    // A FLUSH waiting behind a long query would block every writer: give up
    // after lock_wait_timeout instead (the backup fails, writes go on).
    exec(
        &mut coord,
        "SET SESSION lock_wait_timeout = 10",
        Duration::from_secs(10),
    )
    .await?;
    exec(
        &mut coord,
        "FLUSH TABLES WITH READ LOCK",
        Duration::from_secs(15),
    )
    .await?;
    let snap = async {
        for c in conns.iter_mut() {
            exec(
                c,
                "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ",
                Duration::from_secs(10),
            )
            .await?;
            exec(
                c,
                "START TRANSACTION WITH CONSISTENT SNAPSHOT",
                Duration::from_secs(10),
            )
            .await?;
        }
        let r = rows(&mut coord, d.binlog_gtid_query(), Duration::from_secs(10)).await?;
        let col = |i: usize| {
            r.first()
                .and_then(|r| r.as_ref(i))
                .and_then(value_str)
                .unwrap_or_default()
        };
        Ok::<(String, String), MySqlError>((col(0), col(1)))
    }
    .await;
    let unlock = exec(&mut coord, "UNLOCK TABLES", Duration::from_secs(10)).await;
    let (gtid, binlog_state) = snap?;
    unlock?;
    drop(coord);
    tracing::info!(host = %source.host, gtid = %gtid, workers, "backup snapshot taken");

    let (pre, mut post, tables, ntables) = dump_schema(&mut conns[0]).await?;
    post.extend(dump_users(&mut conns[0], d, &opts.exclude_users).await?);
    let mut chunks = Vec::new();
    for t in tables {
        chunks.extend(split(&mut conns[0], t, opts.chunk_rows).await?);
    }
    // Biggest first would be better; key ranges already balance big tables.
    let queue = Arc::new(Mutex::new(chunks));

    // Frames are compressed (each its own zstd frame) and hashed by the
    // producers in parallel; the writer only appends them in order and hashes
    // the stored bytes. The bounded channel makes producers wait for a slow
    // sink: nothing is buffered whole.
    let (tx, mut rx) = mpsc::channel::<Msg>(4 * workers + 4);
    let level = opts.zstd_level;
    let header = format!(
        "format=1\nflavor={:?}\ngtid={gtid}\nbinlog_state={binlog_state}\ncreated={}\n",
        source.flavor,
        chrono::Utc::now().to_rfc3339()
    );
    let mut hw = HashingWriter {
        inner: sink,
        hasher: Sha256::new(),
        bytes: 0,
    };
    let writer = async {
        let mut content = Sha256::new();
        let mut raw = 0u64;
        let mut frames = 0u64;
        let first = seal(
            &Frame {
                kind: KIND_HEADER,
                payload: header.into_bytes(),
            },
            level,
        )
        .map_err(io_err("compress header"))?;
        content.update(first.digest);
        hw.write_all(&first.zst)
            .await
            .map_err(io_err("write artifact"))?;
        raw += first.raw_len;
        frames += 1;
        loop {
            let msg = rx.recv().await.ok_or_else(|| {
                MySqlError::Unexpected("backup producers stopped before the trailer".into())
            })?;
            match msg {
                Msg::Frame(sealing) => {
                    let f = sealing
                        .await
                        .map_err(|e| {
                            MySqlError::Unexpected(format!("compression task failed: {e}"))
                        })?
                        .map_err(io_err("compress frame"))?;
                    content.update(f.digest);
                    hw.write_all(&f.zst)
                        .await
                        .map_err(io_err("write artifact"))?;
                    raw += f.raw_len;
                    frames += 1;
                }
                Msg::Done(rows) => {
                    let t = seal(
                        &Frame {
                            kind: KIND_TRAILER,
                            payload: format!(
                                "frames={frames}\nrows={rows}\nsha256={}\n",
                                hex::encode(content.clone().finalize())
                            )
                            .into_bytes(),
                        },
                        level,
                    )
                    .map_err(io_err("compress trailer"))?;
                    hw.write_all(&t.zst)
                        .await
                        .map_err(io_err("write artifact"))?;
                    raw += t.raw_len;
                    break;
                }
            }
        }
        hw.shutdown().await.map_err(io_err("finish artifact"))?;
        Ok::<u64, MySqlError>(raw)
    };
    let send_err = |_| MySqlError::Unexpected("artifact writer stopped".into());
    let producers = async {
        for f in pre {
            send_frame(&tx, f, level).await?;
        }
        // One task per connection, so reading and encoding rows spreads
        // over the runtime's threads (dropping the set aborts them).
        let mut tasks = tokio::task::JoinSet::new();
        for mut c in conns.drain(..) {
            let queue = queue.clone();
            let tx = tx.clone();
            let stmt = opts.statement_bytes;
            let format = opts.data_format;
            tasks.spawn(async move {
                if format == DataFormat::LoadData {
                    // Raw column bytes, whatever each column's character set.
                    exec(&mut c, "SET NAMES binary", Duration::from_secs(10)).await?;
                }
                let mut rows = 0u64;
                loop {
                    let next = queue.lock().await.pop();
                    let Some(chunk) = next else { break };
                    rows += dump_chunk(&mut c, &chunk, stmt, format, level, &tx).await?;
                }
                let _ = exec(&mut c, "COMMIT", Duration::from_secs(10)).await;
                Ok::<u64, MySqlError>(rows)
            });
        }
        let mut total = 0;
        while let Some(r) = tasks.join_next().await {
            total += r.map_err(|e| MySqlError::Unexpected(format!("dump task failed: {e}")))??;
        }
        for f in post {
            send_frame(&tx, f, level).await?;
        }
        tx.send(Msg::Done(total)).await.map_err(send_err)?;
        Ok::<u64, MySqlError>(total)
    };
    let (prod, wr) = tokio::join!(producers, writer);
    let total_rows = prod?;
    let raw = wr?;
    let summary = BackupSummary {
        size: hw.bytes,
        raw_size: raw,
        sha256: hex::encode(hw.hasher.finalize()),
        gtid,
        tables: ntables,
        rows: total_rows,
        duration: started.elapsed(),
    };
    tracing::info!(host = %source.host, size = summary.size, rows = summary.rows, sha256 = %summary.sha256, "backup finished");
    Ok(summary)
}

/// Reads frames from a decompressed artifact stream.
struct FrameReader<R> {
    inner: R,
    raw_hash: Sha256,
    frames: u64,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Next frame; the raw digest covers frames before the trailer only.
    async fn next(&mut self) -> Result<Option<Frame>, MySqlError> {
        let mut head = [0u8; 5];
        match self.inner.read_exact(&mut head[..1]).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(MySqlError::Corrupt(format!("cannot read artifact: {e}"))),
        }
        self.inner
            .read_exact(&mut head[1..])
            .await
            .map_err(|e| MySqlError::Corrupt(format!("truncated frame header: {e}")))?;
        let kind = head[0];
        let len = u32::from_le_bytes([head[1], head[2], head[3], head[4]]) as usize;
        if len > MAX_FRAME
            || ![
                KIND_HEADER,
                KIND_SCHEMA,
                KIND_DATA,
                KIND_POST,
                KIND_ROWS,
                KIND_TRAILER,
            ]
            .contains(&kind)
        {
            return Err(MySqlError::Corrupt(format!(
                "invalid frame (kind {kind}, {len} bytes) after {} frames",
                self.frames
            )));
        }
        let mut payload = vec![0u8; len];
        self.inner
            .read_exact(&mut payload)
            .await
            .map_err(|e| MySqlError::Corrupt(format!("truncated frame: {e}")))?;
        if kind != KIND_TRAILER {
            let mut h = Sha256::new();
            h.update(head);
            h.update(&payload);
            self.raw_hash.update(h.finalize());
        }
        self.frames += 1;
        Ok(Some(Frame { kind, payload }))
    }
}

fn kv(text: &str, key: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")).map(str::to_string))
}

/// Check a trailer against what was read.
fn check_trailer(f: &Frame, raw_hash: &Sha256, frames_before: u64) -> Result<u64, MySqlError> {
    let text = String::from_utf8_lossy(&f.payload);
    let want = kv(&text, "sha256").unwrap_or_default();
    let got = hex::encode(raw_hash.clone().finalize());
    if want != got {
        return Err(MySqlError::Corrupt(format!(
            "content digest mismatch (trailer {want}, computed {got})"
        )));
    }
    let frames: u64 = kv(&text, "frames")
        .and_then(|s| s.parse().ok())
        .unwrap_or(u64::MAX);
    if frames != frames_before {
        return Err(MySqlError::Corrupt(format!(
            "trailer announces {frames} frames, read {frames_before}"
        )));
    }
    Ok(kv(&text, "rows").and_then(|s| s.parse().ok()).unwrap_or(0))
}

fn decoder<R: AsyncRead + Unpin>(r: R) -> ZstdDecoder<BufReader<R>> {
    // One zstd frame per artifact frame.
    let mut d = ZstdDecoder::new(BufReader::with_capacity(256 << 10, r));
    d.multiple_members(true);
    d
}

/// Read a whole stored artifact and check its structure, its content digest
/// and (when given) the sha256 of the stored bytes. Applies nothing.
pub async fn verify<R>(reader: R, expected_sha256: Option<&str>) -> Result<ArtifactInfo, MySqlError>
where
    R: AsyncRead + Unpin + Send,
{
    let mut hr = HashingReader {
        inner: reader,
        hasher: Sha256::new(),
        bytes: 0,
    };
    let (gtid, flavor, frames, rows) = {
        let mut fr = FrameReader {
            inner: decoder(&mut hr),
            raw_hash: Sha256::new(),
            frames: 0,
        };
        let mut header: Option<String> = None;
        let mut result = None;
        while let Some(f) = fr.next().await? {
            match f.kind {
                KIND_HEADER if fr.frames == 1 => {
                    header = Some(String::from_utf8_lossy(&f.payload).to_string())
                }
                KIND_HEADER => return Err(MySqlError::Corrupt("second header".into())),
                _ if header.is_none() => return Err(MySqlError::Corrupt("missing header".into())),
                KIND_TRAILER => {
                    let rows = check_trailer(&f, &fr.raw_hash, fr.frames - 1)?;
                    result = Some(rows);
                    break;
                }
                _ => {}
            }
        }
        let rows = result
            .ok_or_else(|| MySqlError::Corrupt("no trailer: the artifact is truncated".into()))?;
        // Nothing may follow the trailer.
        let mut rest = [0u8; 1];
        match fr.inner.read(&mut rest).await {
            Ok(0) => {}
            Ok(_) => return Err(MySqlError::Corrupt("data after the trailer".into())),
            Err(e) => return Err(MySqlError::Corrupt(format!("cannot read artifact: {e}"))),
        }
        let h = header.unwrap_or_default();
        (
            kv(&h, "gtid").unwrap_or_default(),
            kv(&h, "flavor").unwrap_or_default(),
            fr.frames,
            rows,
        )
    };
    // Drain anything the decoder did not need (e.g. padding) into the digest.
    let mut sink = tokio::io::sink();
    tokio::io::copy(&mut hr, &mut sink)
        .await
        .map_err(io_err("read artifact"))?;
    let sha = hex::encode(hr.hasher.clone().finalize());
    if let Some(want) = expected_sha256
        && !want.eq_ignore_ascii_case(&sha)
    {
        return Err(MySqlError::Corrupt(format!(
            "sha256 mismatch: expected {want}, artifact has {sha}"
        )));
    }
    Ok(ArtifactInfo {
        sha256: sha,
        size: hr.bytes,
        gtid,
        flavor,
        frames,
        rows,
    })
}

/// What an artifact's header records: the GTID position of the snapshot
/// and the server flavor.
#[derive(Clone, Debug, PartialEq)]
pub struct ArtifactHeader {
    pub gtid: String,
    pub flavor: String,
}

/// Read only an artifact's first frame, its header. Nothing else is
/// checked: a restore still verifies the whole artifact before it applies
/// anything. A point-in-time restore uses this to check its replay before
/// loading the base.
pub async fn read_header<R>(reader: R) -> Result<ArtifactHeader, MySqlError>
where
    R: AsyncRead + Unpin + Send,
{
    let mut fr = FrameReader {
        inner: decoder(reader),
        raw_hash: Sha256::new(),
        frames: 0,
    };
    match fr.next().await? {
        Some(f) if f.kind == KIND_HEADER => {
            let h = String::from_utf8_lossy(&f.payload);
            Ok(ArtifactHeader {
                gtid: kv(&h, "gtid").unwrap_or_default(),
                flavor: kv(&h, "flavor").unwrap_or_default(),
            })
        }
        _ => Err(MySqlError::Corrupt(
            "the artifact does not start with a header".into(),
        )),
    }
}

async fn session_for_load(c: &mut Conn) -> Result<(), MySqlError> {
    // READ COMMITTED: fewer gap locks between parallel loaders.
    exec(
        c,
        "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
        Duration::from_secs(10),
    )
    .await?;
    exec(
        c,
        "SET SESSION sql_log_bin = 0, SESSION foreign_key_checks = 0, SESSION unique_checks = 0, \
         SESSION sql_mode = 'NO_AUTO_VALUE_ON_ZERO', NAMES utf8mb4",
        Duration::from_secs(10),
    )
    .await
}

async fn apply_schema(c: &mut Conn, payload: &[u8]) -> Result<(), MySqlError> {
    let text = String::from_utf8_lossy(payload);
    let (db, stmt) = text.split_once('\n').unwrap_or(("", &text));
    if !db.is_empty() {
        exec(
            c,
            &format!("USE {}", quote_ident(db)),
            Duration::from_secs(30),
        )
        .await?;
    }
    c.query_drop(stmt).await.map_err(sql_err(format!(
        "apply schema statement {}",
        stmt.chars().take(80).collect::<String>()
    )))
}

/// A `CREATE TABLE` statement (as `SHOW CREATE TABLE` prints it) without its
/// plain secondary keys, and those keys as `ADD KEY …` clauses, to be built
/// after the table's rows are loaded: InnoDB builds an index from sorted
/// rows far cheaper than it maintains it row by row. `None` when nothing is
/// deferred: not InnoDB, no plain `KEY`, a layout not recognised line by
/// line, foreign keys of its own, or a key holding the AUTO_INCREMENT column
/// (which must be indexed when the table is created). Unique, full-text and
/// spatial keys always stay in the statement.
fn defer_secondary_keys(stmt: &str) -> Option<(String, Vec<String>)> {
    let lines: Vec<&str> = stmt.split('\n').collect();
    let head = *lines.first()?;
    if !head.starts_with("CREATE TABLE ") || !head.ends_with(" (") || lines.len() < 3 {
        return None;
    }
    let foot = lines.len() - 1;
    let tail = lines[foot];
    if !tail.starts_with(')') || !tail.contains("ENGINE=InnoDB") {
        return None;
    }
    let body = &lines[1..foot];
    if body
        .iter()
        .any(|l| !l.starts_with("  ") || l.contains("FOREIGN KEY"))
    {
        return None;
    }
    // The AUTO_INCREMENT column's quoted name (backquotes or, under
    // ANSI_QUOTES, double quotes).
    let auto: Option<&str> = body.iter().find_map(|l| {
        let l = l.trim_start();
        let q = l.chars().next().filter(|c| *c == '`' || *c == '"')?;
        let end = l[1..].find(q)? + 2;
        l[end..].contains(" AUTO_INCREMENT").then_some(&l[..end])
    });
    let mut keep = Vec::new();
    let mut keys = Vec::new();
    for l in body {
        let def = l.trim().trim_end_matches(',');
        if def.starts_with("KEY ") && auto.is_none_or(|a| !def.contains(a)) {
            keys.push(format!("ADD {def}"));
        } else {
            keep.push(format!("  {def}"));
        }
    }
    if keys.is_empty() || keep.is_empty() {
        return None;
    }
    Some((format!("{head}\n{}\n{tail}", keep.join(",\n")), keys))
}

/// The quoted table name of a `CREATE TABLE` statement.
fn created_table(stmt: &str) -> Option<&str> {
    let head = stmt.lines().next()?;
    head.strip_prefix("CREATE TABLE ")?.strip_suffix(" (")
}

/// Apply the schema statements read so far, in order. Plain secondary keys
/// of InnoDB tables that no foreign key involves are left out of the table
/// and returned as `ALTER TABLE … ADD KEY …` statements for after the load.
async fn apply_schemas(c: &mut Conn, payloads: Vec<Vec<u8>>) -> Result<Vec<String>, MySqlError> {
    let texts: Vec<String> = payloads
        .iter()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    // Lines naming a referenced table: its keys may serve the reference.
    let references: Vec<&str> = texts
        .iter()
        .flat_map(|t| t.lines())
        .filter(|l| l.contains(" REFERENCES "))
        .collect();
    let mut deferred = Vec::new();
    for text in &texts {
        let (db, stmt) = text.split_once('\n').unwrap_or(("", text));
        let plan = (!db.is_empty())
            .then(|| defer_secondary_keys(stmt))
            .flatten()
            .zip(created_table(stmt))
            .filter(|(_, name)| !references.iter().any(|l| l.contains(name)));
        let Some(((create, keys), name)) = plan else {
            apply_schema(c, text.as_bytes()).await?;
            continue;
        };
        let lean = format!("{db}\n{create}");
        match apply_schema(c, lean.as_bytes()).await {
            Ok(()) => deferred.push(format!(
                "ALTER TABLE {}.{name} {}",
                quote_ident(db),
                keys.join(", ")
            )),
            Err(e) => {
                // Whatever the server disliked about the lean form, the
                // statement as dumped is authoritative.
                tracing::warn!(table = %name, error = %e, "creating the table with its keys (deferring them failed)");
                apply_schema(c, text.as_bytes()).await?;
            }
        }
    }
    Ok(deferred)
}

/// Build the deferred secondary keys, one table per connection at a time.
async fn build_deferred_keys(conns: Vec<Conn>, alters: Vec<String>) -> Result<(), MySqlError> {
    if alters.is_empty() {
        return Ok(());
    }
    let n = alters.len();
    let started = Instant::now();
    let queue = Arc::new(Mutex::new(alters));
    let tasks = conns.into_iter().map(|mut c| {
        let queue = queue.clone();
        async move {
            exec(&mut c, "SET NAMES utf8mb4", Duration::from_secs(10)).await?;
            loop {
                let next = queue.lock().await.pop();
                let Some(sql) = next else { break };
                // No timeout: an index build takes as long as the table needs.
                c.query_drop(sql.as_str())
                    .await
                    .map_err(sql_err(format!("build deferred keys: {sql}")))?;
            }
            Ok::<(), MySqlError>(())
        }
    });
    for r in futures::future::join_all(tasks).await {
        r?;
    }
    tracing::info!(tables = n, took = ?started.elapsed(), "secondary keys built after the load");
    Ok(())
}

/// Apply one data frame on a loader connection. Each frame is one
/// autocommitted statement, rolled back as a whole on a deadlock or lock wait
/// timeout between parallel loaders, so it is retried (bounded).
async fn load_frame(c: &mut Conn, f: Frame) -> Result<(), MySqlError> {
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        match load_frame_once(c, &f).await {
            Err(MySqlError::Sql {
                source: mysql_async::Error::Server(e),
                ..
            }) if (e.code == 1213 || e.code == 1205) && attempt < 8 => {
                tracing::debug!(
                    attempt,
                    code = e.code,
                    "retrying a data frame after a lock conflict"
                );
                tokio::time::sleep(Duration::from_millis(20 * u64::from(attempt))).await;
            }
            other => return other,
        }
    }
}

async fn load_frame_once(c: &mut Conn, f: &Frame) -> Result<(), MySqlError> {
    if f.kind == KIND_DATA {
        return c
            .query_drop(f.payload.as_slice())
            .await
            .map_err(sql_err("load INSERT statement"));
    }
    let p = &f.payload;
    let first = p
        .iter()
        .position(|&b| b == b'\n')
        .ok_or_else(|| MySqlError::Corrupt("rows frame without table".into()))?;
    let second = p[first + 1..]
        .iter()
        .position(|&b| b == b'\n')
        .map(|i| first + 1 + i)
        .ok_or_else(|| MySqlError::Corrupt("rows frame without table".into()))?;
    let db = String::from_utf8_lossy(&p[..first]).to_string();
    let table = String::from_utf8_lossy(&p[first + 1..second]).to_string();
    let data = bytes::Bytes::copy_from_slice(&p[second + 1..]);
    c.set_infile_handler(async move {
        let s: mysql_async::InfileData = Box::pin(futures::stream::once(async move { Ok(data) }));
        Ok(s)
    });
    let sql = format!(
        "LOAD DATA LOCAL INFILE 'ordinal-frame' INTO TABLE {}.{} CHARACTER SET binary \
         FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n'",
        quote_ident(&db),
        quote_ident(&table)
    );
    c.query_drop(sql.as_str())
        .await
        .map_err(sql_err(format!("load rows into {db}.{table}")))
}

/// Load an artifact into `target` in one pass: schema in order, data frames in
/// parallel, the plain secondary keys of InnoDB tables built after their
/// rows (see [`defer_secondary_keys`]), post-data (views' dependants,
/// routines, triggers) last, then the GTID state. The content digest is
/// checked at the end; for a stored artifact prefer [`restore_verified`],
/// which refuses corruption before applying anything.
pub async fn restore<R>(
    reader: R,
    target: &Endpoint,
    opts: &RestoreOptions,
) -> Result<RestoreSummary, MySqlError>
where
    R: AsyncRead + Unpin + Send,
{
    let mut admin = open(target, opts.connect_timeout).await?;
    let undo = lift_for_load(&mut admin, Dialect(target.flavor)).await?;
    let res = restore_unguarded(reader, target, opts).await;
    // Put the server's settings back whatever the outcome.
    let mut put_back = Ok(());
    for s in undo {
        if let Err(e) = exec(&mut admin, &s, Duration::from_secs(10)).await {
            put_back = Err(e);
        }
    }
    let summary = res?;
    put_back?;
    Ok(summary)
}

/// MySQL settings that stand in the way of a restore, lifted for its
/// duration; returns the statements putting them back. A fenced member
/// (`super_read_only`) refuses even root: read_only stays on while loading.
/// `local_infile` is off by default on MySQL 8 and the data frames are
/// loaded with `LOAD DATA LOCAL`. Nothing on MariaDB.
async fn lift_for_load(c: &mut Conn, d: Dialect) -> Result<Vec<String>, MySqlError> {
    let mut undo = Vec::new();
    if d.flavor() != MySqlFlavor::MySQL {
        return Ok(undo);
    }
    let t = Duration::from_secs(10);
    if first_string(c, "SELECT @@GLOBAL.super_read_only", 0)
        .await?
        .as_deref()
        == Some("1")
    {
        for s in d.lift_super_read_only() {
            exec(c, &s, t).await?;
        }
        undo.extend(d.restore_super_read_only());
    }
    if first_string(c, "SELECT @@GLOBAL.local_infile", 0)
        .await?
        .as_deref()
        == Some("0")
    {
        exec(c, "SET GLOBAL local_infile = ON", t).await?;
        undo.push("SET GLOBAL local_infile = OFF".into());
    }
    Ok(undo)
}

async fn restore_unguarded<R>(
    reader: R,
    target: &Endpoint,
    opts: &RestoreOptions,
) -> Result<RestoreSummary, MySqlError>
where
    R: AsyncRead + Unpin + Send,
{
    let started = Instant::now();
    let d = Dialect(target.flavor);
    let mut main = open(target, opts.connect_timeout).await?;
    if opts.require_empty {
        let n: Option<i64> = main
            .query_first(format!(
                "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME NOT IN ({SYSTEM_SCHEMAS})"
            ))
            .await
            .map_err(sql_err("check target is empty"))?;
        if n.unwrap_or(0) > 0 {
            return Err(MySqlError::Unexpected(format!(
                "restore target {}:{} already holds {} user schema(s); refusing to overwrite",
                target.host,
                target.port,
                n.unwrap_or(0)
            )));
        }
    }
    let version = first_string(&mut main, "SELECT @@version", 0)
        .await?
        .unwrap_or_default();
    session_for_load(&mut main).await?;
    let mut fr = FrameReader {
        inner: decoder(reader),
        raw_hash: Sha256::new(),
        frames: 0,
    };
    let first = fr
        .next()
        .await?
        .ok_or_else(|| MySqlError::Corrupt("empty artifact".into()))?;
    if first.kind != KIND_HEADER {
        return Err(MySqlError::Corrupt("missing header".into()));
    }
    let header = String::from_utf8_lossy(&first.payload).to_string();
    if kv(&header, "format").as_deref() != Some("1") {
        return Err(MySqlError::Corrupt("unknown artifact format".into()));
    }
    let gtid = kv(&header, "gtid").unwrap_or_default();

    let workers = opts.workers.max(1);
    let mut loaders = Vec::with_capacity(workers);
    for _ in 0..workers {
        let mut c = open(target, opts.connect_timeout).await?;
        session_for_load(&mut c).await?;
        loaders.push(c);
    }
    let (tx, rx) = mpsc::channel::<Frame>(workers * 2);
    let rx = Arc::new(Mutex::new(rx));
    let mut statements = 0u64;
    let load = {
        let tasks: Vec<_> = loaders
            .into_iter()
            .map(|mut c| {
                let rx = rx.clone();
                async move {
                    let mut names = "utf8mb4";
                    loop {
                        let next = rx.lock().await.recv().await;
                        let Some(frame) = next else { break };
                        // INSERT text is UTF-8; rows frames hold raw column bytes.
                        let want = if frame.kind == KIND_DATA {
                            "utf8mb4"
                        } else {
                            "binary"
                        };
                        if names != want {
                            exec(
                                &mut c,
                                &format!("SET NAMES {want}"),
                                Duration::from_secs(10),
                            )
                            .await?;
                            names = want;
                        }
                        load_frame(&mut c, frame).await?;
                    }
                    Ok::<Conn, MySqlError>(c)
                }
            })
            .collect();
        futures::future::join_all(tasks)
    };
    let read = async {
        let mut post = Vec::new();
        let mut trailer_rows = None;
        // Schema statements wait until the data starts, so the foreign keys
        // of every table are known before any key is deferred.
        let mut schema = Vec::new();
        let mut deferred = Vec::new();
        while let Some(f) = fr.next().await? {
            statements += 1;
            if f.kind != KIND_SCHEMA && !schema.is_empty() {
                deferred.extend(apply_schemas(&mut main, std::mem::take(&mut schema)).await?);
            }
            match f.kind {
                KIND_SCHEMA => schema.push(f.payload),
                KIND_DATA | KIND_ROWS => tx
                    .send(f)
                    .await
                    .map_err(|_| MySqlError::Unexpected("a loader failed".into()))?,
                KIND_POST => post.push(f.payload),
                KIND_TRAILER => {
                    trailer_rows = Some(check_trailer(&f, &fr.raw_hash, fr.frames - 1)?);
                    break;
                }
                _ => return Err(MySqlError::Corrupt("unexpected frame".into())),
            }
        }
        drop(tx);
        let rows = trailer_rows
            .ok_or_else(|| MySqlError::Corrupt("no trailer: the artifact is truncated".into()))?;
        Ok::<(u64, Vec<Vec<u8>>, Vec<String>), MySqlError>((rows, post, deferred))
    };
    let (read_res, load_res) = tokio::join!(read, load);
    let mut conns = Vec::with_capacity(workers);
    for r in load_res {
        conns.push(r?);
    }
    let (rows, post, deferred) = read_res?;
    build_deferred_keys(conns, deferred).await?;
    for p in post {
        apply_schema(&mut main, &p).await?;
    }
    if opts.set_gtid && !gtid.is_empty() {
        let state = kv(&header, "binlog_state").unwrap_or_default();
        let stmts = d.set_restored_gtid_on(
            &version,
            &gtid,
            Some(state.as_str()).filter(|s| !s.is_empty()),
        );
        for s in stmts {
            exec(&mut main, &s, Duration::from_secs(30)).await?;
        }
    }
    tracing::info!(host = %target.host, rows, gtid = %gtid, "restore finished");
    Ok(RestoreSummary {
        gtid,
        rows,
        statements,
        duration: started.elapsed(),
    })
}

/// Hash a stored artifact and compare with the digest recorded when it was
/// written; returns its size.
async fn check_stored_sha256<R>(mut reader: R, expected: &str) -> Result<u64, MySqlError>
where
    R: AsyncRead + Unpin + Send,
{
    let mut h = Sha256::new();
    let mut bytes = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader
            .read(&mut buf)
            .await
            .map_err(|e| MySqlError::Corrupt(format!("cannot read artifact: {e}")))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        bytes += n as u64;
    }
    let sha = hex::encode(h.finalize());
    if !expected.eq_ignore_ascii_case(&sha) {
        return Err(MySqlError::Corrupt(format!(
            "sha256 mismatch: expected {expected}, artifact has {sha} ({bytes} bytes)"
        )));
    }
    Ok(bytes)
}

/// Check the stored artifact against the sha256 recorded when it was written
/// (the digest of every byte the backup wrote, taken as it wrote them), then
/// restore it: a corrupted, truncated or tampered artifact is refused before
/// anything is applied. The load checks the structure, the content digest
/// and the trailer again as it reads (what [`verify`] checks), so an
/// artifact that matches its sha256 but was written wrong still fails the
/// restore. `open` is called twice and must return the same bytes.
pub async fn restore_verified<F, Fut, R>(
    mut open_artifact: F,
    expected_sha256: &str,
    target: &Endpoint,
    opts: &RestoreOptions,
) -> Result<RestoreSummary, MySqlError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::io::Result<R>>,
    R: AsyncRead + Unpin + Send,
{
    let first = open_artifact().await.map_err(io_err("open artifact"))?;
    check_stored_sha256(first, expected_sha256).await?;
    let second = open_artifact().await.map_err(io_err("open artifact"))?;
    restore(second, target, opts).await
}

impl MySqlEngine {
    /// Re-seed `target` (a replica whose source purged the binlogs it needs,
    /// a member lacking transactions it originated, or a returned primary
    /// whose extra transactions were provably never acknowledged) from a
    /// fresh dump of `source`, streamed directly into it, then point it at
    /// `source` from the dump's GTID position. The restore resets its
    /// binlogs, so nothing it held beyond the source survives.
    pub(crate) async fn reseed(
        &self,
        source: &Member,
        target: &Member,
        creds: &Creds,
        d: Dialect,
    ) -> Result<String, MySqlError> {
        let root = Login {
            user: "root".into(),
            password: creds.root.clone(),
        };
        let ep = |m: &Member| Endpoint {
            host: m.address.clone().unwrap_or_default(),
            port: m.port,
            login: root.clone(),
            flavor: d.flavor(),
        };
        let (src, dst) = (ep(source), ep(target));
        let mut c = connect(&dst.host, dst.port, &root, self.cfg.connect_timeout).await?;
        let t = self.cfg.query_timeout;
        exec(&mut c, d.stop_replica(), t).await?;
        exec(&mut c, d.reset_replica_all(), t).await?;
        // MySQL: replacing the schemas of a fenced member needs super_read_only
        // off (read_only stays on); it is turned back on after the load
        // (the restore itself finds it off and leaves it to this function).
        for s in d.lift_super_read_only() {
            exec(&mut c, &s, t).await?;
        }
        exec(&mut c, "SET SESSION sql_log_bin = 0", t).await?;
        let dbs: Vec<String> = c
            .query(format!(
                "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME NOT IN ({SYSTEM_SCHEMAS})"
            ))
            .await
            .map_err(sql_err("list schemas to replace"))?;
        for db in dbs {
            exec(
                &mut c,
                &format!("DROP DATABASE {}", quote_ident(&db)),
                Duration::from_secs(120),
            )
            .await?;
        }
        let (w, r) = tokio::io::duplex(1 << 20);
        let bopts = BackupOptions {
            workers: 2,
            ..Default::default()
        };
        let ropts = RestoreOptions {
            workers: 2,
            ..Default::default()
        };
        let (b, rs) = tokio::join!(
            async {
                let mut w = w;
                let r = backup(&src, &mut w, &bopts).await;
                let _ = w.shutdown().await;
                r
            },
            restore(r, &dst, &ropts)
        );
        // Fenced again whatever the outcome (MySQL; nothing on MariaDB).
        let mut c = connect(&dst.host, dst.port, &root, self.cfg.connect_timeout).await?;
        for s in d.restore_super_read_only() {
            exec(&mut c, &s, t).await?;
        }
        let summary = b?;
        rs?;
        // The restore set gtid_slave_pos to the dump's position: follow the
        // source from exactly there.
        exec(
            &mut c,
            &d.change_source(
                &source.dns_name,
                source.port,
                &self.cfg.replication_user,
                &creds.replication,
            ),
            t,
        )
        .await?;
        exec(&mut c, d.start_replica(), t).await?;
        tracing::info!(member = %target.pod, gtid = %summary.gtid, rows = summary.rows, "re-seeded from a fresh dump");
        Ok(summary.gtid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals() {
        let mut s = String::new();
        push_literal(
            &mut s,
            &Value::Bytes(b"it's \\ \n".to_vec()),
            ColumnType::MYSQL_TYPE_VAR_STRING,
            false,
        );
        assert_eq!(s, r"'it\'s \\ \n'");
        s.clear();
        push_literal(
            &mut s,
            &Value::Bytes(vec![0, 255]),
            ColumnType::MYSQL_TYPE_BLOB,
            true,
        );
        assert_eq!(s, "0x00ff");
        s.clear();
        push_literal(
            &mut s,
            &Value::Bytes(b"-12.5".to_vec()),
            ColumnType::MYSQL_TYPE_NEWDECIMAL,
            false,
        );
        assert_eq!(s, "-12.5");
        s.clear();
        push_literal(&mut s, &Value::NULL, ColumnType::MYSQL_TYPE_LONG, false);
        assert_eq!(s, "NULL");
    }

    #[test]
    fn tsv_escapes() {
        let mut out = Vec::new();
        push_tsv(&mut out, Some(&Value::Bytes(b"a\tb\\c\nd\re\0f".to_vec())));
        out.push(b'|');
        push_tsv(&mut out, Some(&Value::Bytes(b"plain".to_vec())));
        out.push(b'|');
        push_tsv(&mut out, Some(&Value::Bytes(b"\n".to_vec())));
        out.push(b'|');
        push_tsv(&mut out, Some(&Value::NULL));
        out.push(b'|');
        push_tsv(&mut out, Some(&Value::Bytes(Vec::new())));
        assert_eq!(out, b"a\\tb\\\\c\\nd\\re\\0f|plain|\\n|\\N|".to_vec());
    }

    #[test]
    fn secondary_keys_are_deferred_only_when_safe() {
        let t = "CREATE TABLE `t1` (\n  `id` bigint(20) NOT NULL,\n  `k` int(11) NOT NULL,\n  `c` char(10) NOT NULL,\n  PRIMARY KEY (`id`),\n  UNIQUE KEY `u` (`c`),\n  KEY `k_t1` (`k`),\n  KEY `kc` (`k`,`c`) COMMENT 'x, y'\n) ENGINE=InnoDB DEFAULT CHARSET=latin1";
        let (create, keys) = defer_secondary_keys(t).expect("deferred");
        assert_eq!(
            create,
            "CREATE TABLE `t1` (\n  `id` bigint(20) NOT NULL,\n  `k` int(11) NOT NULL,\n  `c` char(10) NOT NULL,\n  PRIMARY KEY (`id`),\n  UNIQUE KEY `u` (`c`)\n) ENGINE=InnoDB DEFAULT CHARSET=latin1"
        );
        assert_eq!(
            keys,
            [
                "ADD KEY `k_t1` (`k`)",
                "ADD KEY `kc` (`k`,`c`) COMMENT 'x, y'"
            ]
        );
        assert_eq!(created_table(t), Some("`t1`"));
        // The AUTO_INCREMENT column's only key stays; others are deferred.
        let a = "CREATE TABLE `a` (\n  `id` int(11) NOT NULL AUTO_INCREMENT,\n  `k` int(11) DEFAULT NULL,\n  KEY `id` (`id`),\n  KEY `k` (`k`)\n) ENGINE=InnoDB AUTO_INCREMENT=5";
        let (create, keys) = defer_secondary_keys(a).expect("deferred");
        assert!(create.contains("  KEY `id` (`id`)\n)"), "{create}");
        assert_eq!(keys, ["ADD KEY `k` (`k`)"]);
        // Nothing deferred: foreign keys, other engines, no plain key, a
        // layout that is not one definition per line.
        for s in [
            "CREATE TABLE `c` (\n  `id` int(11) NOT NULL,\n  `p` int(11) DEFAULT NULL,\n  PRIMARY KEY (`id`),\n  KEY `p` (`p`),\n  CONSTRAINT `fk` FOREIGN KEY (`p`) REFERENCES `parent` (`id`)\n) ENGINE=InnoDB",
            "CREATE TABLE `m` (\n  `id` int(11) NOT NULL,\n  KEY `id` (`id`)\n) ENGINE=MyISAM",
            "CREATE TABLE `p` (\n  `id` int(11) NOT NULL,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB",
            "CREATE TABLE `x` (`id` int, KEY (`id`)) ENGINE=InnoDB",
        ] {
            assert_eq!(defer_secondary_keys(s), None, "{s}");
        }
    }

    #[tokio::test]
    async fn verify_detects_truncation_and_bit_flips() {
        // Build a tiny artifact by hand through the same writer path.
        let mut raw = Vec::new();
        let mut raw_hash = Sha256::new();
        let mut frames = 0u64;
        for f in [
            Frame {
                kind: KIND_HEADER,
                payload: b"format=1
gtid=0-1-5
"
                .to_vec(),
            },
            Frame {
                kind: KIND_DATA,
                payload: b"INSERT INTO `a`.`b` VALUES (1)".to_vec(),
            },
        ] {
            let h = frame_bytes(&f);
            let mut fh = Sha256::new();
            fh.update(&h);
            fh.update(&f.payload);
            raw_hash.update(fh.finalize());
            raw.extend_from_slice(&h);
            raw.extend_from_slice(&f.payload);
            frames += 1;
        }
        let t = Frame {
            kind: KIND_TRAILER,
            payload: format!(
                "frames={frames}
rows=1
sha256={}
",
                hex::encode(raw_hash.finalize())
            )
            .into_bytes(),
        };
        raw.extend_from_slice(&frame_bytes(&t));
        raw.extend_from_slice(&t.payload);
        let good = zstd::encode_all(&raw[..], 3).unwrap();
        let sha = hex::encode(Sha256::digest(&good));
        let info = verify(&good[..], Some(&sha)).await.unwrap();
        assert_eq!(
            (info.gtid.as_str(), info.rows, info.frames),
            ("0-1-5", 1, 3)
        );
        // stored sha256 mismatch
        assert!(matches!(
            verify(&good[..], Some("00")).await,
            Err(MySqlError::Corrupt(_))
        ));
        // The first pass of a verified restore: the stored bytes' digest.
        assert_eq!(
            check_stored_sha256(&good[..], &sha.to_uppercase())
                .await
                .unwrap(),
            good.len() as u64
        );
        let mut tampered = good.clone();
        tampered[good.len() / 2] ^= 1;
        assert!(matches!(
            check_stored_sha256(&tampered[..], &sha).await,
            Err(MySqlError::Corrupt(_))
        ));
        assert!(matches!(
            check_stored_sha256(&good[..good.len() - 1], &sha).await,
            Err(MySqlError::Corrupt(_))
        ));
        // truncated content (valid zstd of fewer frames)
        let cut = zstd::encode_all(&raw[..raw.len() - t.payload.len() - 5], 3).unwrap();
        assert!(matches!(
            verify(&cut[..], None).await,
            Err(MySqlError::Corrupt(_))
        ));
        // flipped content byte (valid zstd, wrong digest)
        let mut flipped = raw.clone();
        flipped[10] ^= 1;
        let bad = zstd::encode_all(&flipped[..], 3).unwrap();
        assert!(verify(&bad[..], None).await.is_err());
    }
}
