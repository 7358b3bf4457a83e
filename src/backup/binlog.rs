//! Binlog archive: the segment format, its manifests, and how segments are
//! stored in, listed from and verified against a backup target.
//!
//! Point-in-time recovery of MySQL/MariaDB is a base backup (a logical dump
//! at a recorded GTID position, `crate::mysql::backup`) plus the binlog
//! transactions after it. The archiver ([`super::binlog_archive`]) streams
//! binlog events from a member as a replication client and cuts them, at
//! transaction boundaries, into segments; the replayer
//! ([`super::binlog_replay`]) applies archived transactions to a restored
//! server up to a point in time or a GTID.
//!
//! # Segment (format 1)
//! One zstd-compressed object `<archive>/<number>.binlog.zst`, decompressed a
//! self-contained binlog file: the magic `\xfebin`, the source's format
//! description event, then the events of complete transactions exactly as the
//! server sent them (each with its CRC32), no rotate or heartbeat events.
//! `mariadb-binlog` reads a MariaDB segment as it reads any binlog file
//! (`tests/pitr.rs`).
//!
//! # Manifest
//! `<archive>/<number>.json` ([`SegmentManifest`]), written only after the
//! store confirmed the segment: its sha256 and size, the GTID position before
//! its first transaction (`startPosition`) and after its last
//! (`endPosition`), first/last GTID and first/last commit timestamp. Segment
//! numbers are consecutive and each segment starts where the one before it
//! ended: a missing or foreign segment breaks that chain and a restore
//! through it fails instead of replaying part of the history.
//!
//! Both flavors: MariaDB transactions start with its GTID event
//! (`domain-server-seq`), MySQL's with a GTID event (`uuid:gno`; anonymous
//! transactions, i.e. `gtid_mode` off, are refused).

use std::collections::BTreeMap;

use futures::TryStreamExt;
use mysql_async::binlog::BinlogVersion;
use mysql_async::binlog::events::{Event, FormatDescriptionEvent};
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::target::Target;
use crate::api::MySqlFlavor;
use crate::mysql::gtid::{GtidParseError, GtidSet};

pub const SEGMENT_FORMAT: i32 = 1;
/// First bytes of every binlog file.
pub const BINLOG_MAGIC: [u8; 4] = [0xfe, b'b', b'i', b'n'];
/// Directory of a cluster's archive below a target's prefix.
pub const ARCHIVE_DIR: &str = "binlog";
const HEADER_LEN: usize = 19;

// Event type codes (MySQL and MariaDB share 0..=40; 160.. are MariaDB's).
pub const QUERY_EVENT: u8 = 2;
pub const STOP_EVENT: u8 = 3;
pub const ROTATE_EVENT: u8 = 4;
pub const INTVAR_EVENT: u8 = 5;
pub const RAND_EVENT: u8 = 13;
pub const USER_VAR_EVENT: u8 = 14;
pub const FORMAT_DESCRIPTION_EVENT: u8 = 15;
pub const XID_EVENT: u8 = 16;
pub const BEGIN_LOAD_QUERY_EVENT: u8 = 17;
pub const EXECUTE_LOAD_QUERY_EVENT: u8 = 18;
pub const TABLE_MAP_EVENT: u8 = 19;
pub const WRITE_ROWS_EVENT_V1: u8 = 23;
pub const UPDATE_ROWS_EVENT_V1: u8 = 24;
pub const DELETE_ROWS_EVENT_V1: u8 = 25;
pub const INCIDENT_EVENT: u8 = 26;
pub const HEARTBEAT_EVENT: u8 = 27;
pub const IGNORABLE_EVENT: u8 = 28;
pub const ROWS_QUERY_EVENT: u8 = 29;
pub const WRITE_ROWS_EVENT: u8 = 30;
pub const UPDATE_ROWS_EVENT: u8 = 31;
pub const DELETE_ROWS_EVENT: u8 = 32;
pub const GTID_EVENT: u8 = 33;
pub const ANONYMOUS_GTID_EVENT: u8 = 34;
pub const PREVIOUS_GTIDS_EVENT: u8 = 35;
pub const XA_PREPARE_LOG_EVENT: u8 = 38;
pub const TRANSACTION_PAYLOAD_EVENT: u8 = 40;
pub const ANNOTATE_ROWS_EVENT: u8 = 160;
pub const BINLOG_CHECKPOINT_EVENT: u8 = 161;
pub const MARIADB_GTID_EVENT: u8 = 162;
pub const GTID_LIST_EVENT: u8 = 163;
pub const START_ENCRYPTION_EVENT: u8 = 164;

// MariaDB GTID event flags.
const FL_STANDALONE: u8 = 1;
const FL_GROUP_COMMIT_ID: u8 = 2;
const FL_PREPARED_XA: u8 = 64;
const FL_COMPLETED_XA: u8 = 128;

#[derive(Debug, thiserror::Error)]
pub enum BinlogError {
    #[error("{context}: {source}")]
    Sql {
        context: String,
        #[source]
        source: mysql_async::Error,
    },
    #[error("{0}")]
    Mysql(#[from] crate::mysql::MySqlError),
    #[error("{action} {path}: {source}")]
    Store {
        action: &'static str,
        path: String,
        #[source]
        source: object_store::Error,
    },
    #[error("binlog segment {path} is corrupt: {why}")]
    Corrupt { path: String, why: String },
    #[error("manifest {path} is unreadable: {why}")]
    BadManifest { path: String, why: String },
    #[error("binlog archive has a gap: {0}")]
    Gap(String),
    #[error("cannot restore to that point: {0}")]
    OutOfRange(String),
    #[error("not supported: {0}")]
    Unsupported(String),
    #[error("invalid binlog stream: {0}")]
    Stream(String),
    #[error(transparent)]
    Gtid(#[from] GtidParseError),
}

/// What one archived segment holds; written next to it after the store
/// confirmed the segment.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SegmentManifest {
    pub format_version: i32,
    /// `MariaDB` or `MySQL`.
    pub flavor: String,
    /// Consecutive from 1 within an archive.
    pub number: u64,
    /// Object key of the segment, relative to the archive directory.
    pub object: String,
    /// GTID position before the segment's first transaction.
    pub start_position: String,
    /// GTID position after its last transaction.
    pub end_position: String,
    pub first_gtid: String,
    pub last_gtid: String,
    /// Unix seconds of the first and last transaction's commit event.
    pub first_timestamp: i64,
    pub last_timestamp: i64,
    pub transactions: u64,
    pub events: u64,
    /// Decompressed bytes (the binlog file).
    pub raw_bytes: u64,
    /// Stored (compressed) bytes.
    pub size_bytes: u64,
    /// sha256 of the stored object.
    pub sha256: String,
    /// Member the events were read from.
    pub source: String,
    /// RFC 3339 time the segment was cut: the archiver had received
    /// everything the source sent until then.
    pub archived_at: String,
}

/// `<prefix>/<namespace>/<cluster>/binlog`: the archive of one cluster.
pub fn archive_dir(prefix: &Path, namespace: &str, cluster: &str) -> Path {
    let mut parts: Vec<String> = prefix.parts().map(|p| p.as_ref().to_string()).collect();
    parts.extend([
        namespace.to_string(),
        cluster.to_string(),
        ARCHIVE_DIR.to_string(),
    ]);
    Path::from_iter(parts)
}

pub fn segment_name(number: u64) -> String {
    format!("{number:010}.binlog.zst")
}

pub fn manifest_name(number: u64) -> String {
    format!("{number:010}.json")
}

/// One binlog event as stored: header, body and checksum bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct RawEvent {
    pub bytes: Vec<u8>,
}

impl RawEvent {
    pub fn type_code(&self) -> u8 {
        self.bytes[4]
    }
    pub fn timestamp(&self) -> u32 {
        u32::from_le_bytes([self.bytes[0], self.bytes[1], self.bytes[2], self.bytes[3]])
    }
    pub fn server_id(&self) -> u32 {
        u32::from_le_bytes([self.bytes[5], self.bytes[6], self.bytes[7], self.bytes[8]])
    }
    /// The event's body: after the common header, without the checksum.
    pub fn body(&self, checksummed: bool) -> &[u8] {
        let end = if checksummed && self.type_code() != FORMAT_DESCRIPTION_EVENT {
            self.bytes.len().saturating_sub(4)
        } else {
            self.bytes.len()
        };
        &self.bytes[HEADER_LEN.min(end)..end]
    }
}

/// A MariaDB GTID event's content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MariaGtid {
    pub domain: u32,
    pub server: u32,
    pub seq: u64,
    pub flags: u8,
}

impl MariaGtid {
    pub fn parse(ev: &RawEvent, checksummed: bool) -> Result<Self, String> {
        let b = ev.body(checksummed);
        if b.len() < 13 {
            return Err(format!("GTID event body of {} bytes", b.len()));
        }
        let seq = u64::from_le_bytes(b[0..8].try_into().map_err(|_| "short GTID event")?);
        let domain = u32::from_le_bytes(b[8..12].try_into().map_err(|_| "short GTID event")?);
        Ok(Self {
            domain,
            server: ev.server_id(),
            seq,
            flags: b[12],
        })
    }
    pub fn standalone(&self) -> bool {
        self.flags & FL_STANDALONE != 0
    }
    pub fn xa(&self) -> bool {
        self.flags & (FL_PREPARED_XA | FL_COMPLETED_XA) != 0
    }
    pub fn group_commit_id(&self) -> bool {
        self.flags & FL_GROUP_COMMIT_ID != 0
    }
}

impl std::fmt::Display for MariaGtid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}-{}", self.domain, self.server, self.seq)
    }
}

/// The GTID of one transaction, of either flavor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Gtid {
    Maria(MariaGtid),
    /// MySQL `uuid:gno` (uuid lower case).
    MySql {
        sid: String,
        gno: u64,
    },
}

impl Gtid {
    /// Parse a transaction's first event (MariaDB or MySQL GTID event).
    pub fn parse(ev: &RawEvent, checksummed: bool) -> Result<Self, String> {
        match ev.type_code() {
            MARIADB_GTID_EVENT => MariaGtid::parse(ev, checksummed).map(Gtid::Maria),
            GTID_EVENT => {
                let b = ev.body(checksummed);
                if b.len() < 25 {
                    return Err(format!("GTID event body of {} bytes", b.len()));
                }
                let u = hex::encode(&b[1..17]);
                let sid = format!(
                    "{}-{}-{}-{}-{}",
                    &u[0..8],
                    &u[8..12],
                    &u[12..16],
                    &u[16..20],
                    &u[20..32]
                );
                let gno = u64::from_le_bytes(b[17..25].try_into().map_err(|_| "short GTID event")?);
                Ok(Gtid::MySql { sid, gno })
            }
            ANONYMOUS_GTID_EVENT => {
                Err("an anonymous transaction (gtid_mode is not ON): archiving needs GTIDs".into())
            }
            other => Err(format!(
                "event of type {other} where a transaction's GTID event belongs"
            )),
        }
    }

    pub fn flavor(&self) -> MySqlFlavor {
        match self {
            Gtid::Maria(_) => MySqlFlavor::MariaDB,
            Gtid::MySql { .. } => MySqlFlavor::MySQL,
        }
    }

    /// This GTID as a one-transaction set.
    pub fn as_set(&self) -> Result<GtidSet, GtidParseError> {
        GtidSet::parse(self.flavor(), &self.to_string())
    }

    /// MariaDB: the GTID event marks a statement outside a transaction (DDL).
    pub fn standalone(&self) -> bool {
        matches!(self, Gtid::Maria(g) if g.standalone())
    }

    pub fn xa(&self) -> bool {
        matches!(self, Gtid::Maria(g) if g.xa())
    }
}

impl std::fmt::Display for Gtid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Gtid::Maria(g) => g.fmt(f),
            Gtid::MySql { sid, gno } => write!(f, "{sid}:{gno}"),
        }
    }
}

/// Whether an event starts a transaction (a GTID event of either flavor).
pub fn starts_transaction(code: u8) -> bool {
    matches!(code, MARIADB_GTID_EVENT | GTID_EVENT | ANONYMOUS_GTID_EVENT)
}

/// A Query event's parts (the post-header layout of both flavors).
#[derive(Clone, Debug, PartialEq)]
pub struct QueryParts<'a> {
    pub error_code: u16,
    pub status_vars: &'a [u8],
    pub schema: &'a [u8],
    pub query: &'a [u8],
}

pub fn parse_query(ev: &RawEvent, checksummed: bool) -> Result<QueryParts<'_>, String> {
    let b = ev.body(checksummed);
    if b.len() < 13 {
        return Err("short query event".into());
    }
    let schema_len = b[8] as usize;
    let error_code = u16::from_le_bytes([b[9], b[10]]);
    let vars_len = u16::from_le_bytes([b[11], b[12]]) as usize;
    let vars_end = 13 + vars_len;
    let schema_end = vars_end + schema_len;
    if b.len() < schema_end + 1 {
        return Err("query event shorter than its lengths".into());
    }
    Ok(QueryParts {
        error_code,
        status_vars: &b[13..vars_end],
        schema: &b[vars_end..schema_end],
        query: &b[schema_end + 1..],
    })
}

/// Whether a Query event's text is the statement `word` (COMMIT, ROLLBACK, BEGIN).
pub fn query_is(q: &[u8], word: &str) -> bool {
    std::str::from_utf8(q).is_ok_and(|s| s.trim().eq_ignore_ascii_case(word))
}

/// Whether the format description declares CRC32 checksums.
pub fn fde_checksummed(fde: &RawEvent) -> bool {
    // FDE body ends with the checksum algorithm byte and, when it is not
    // OFF, the FDE's own CRC32.
    let n = fde.bytes.len();
    n >= HEADER_LEN + 5 && fde.bytes[n - 5] == 1
}

/// Split binlog file bytes (after the magic) into events, checking each
/// event's length and, when the format description declares them, CRC32s.
pub fn split_events(data: &[u8]) -> Result<Vec<RawEvent>, String> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    let mut fde = FormatDescriptionEvent::new(BinlogVersion::Version4);
    while pos < data.len() {
        if data.len() - pos < HEADER_LEN {
            return Err(format!("truncated event header at byte {pos}"));
        }
        let size =
            u32::from_le_bytes(data[pos + 9..pos + 13].try_into().map_err(|_| "header")?) as usize;
        if size < HEADER_LEN || pos + size > data.len() {
            return Err(format!(
                "event of {size} bytes at byte {pos} runs past the end"
            ));
        }
        let bytes = &data[pos..pos + size];
        let ev = Event::read(&fde, bytes).map_err(|e| format!("event at byte {pos}: {e}"))?;
        if bytes[4] == FORMAT_DESCRIPTION_EVENT {
            fde = ev
                .read_event::<FormatDescriptionEvent<'_>>()
                .map_err(|e| format!("format description at byte {pos}: {e}"))?
                .into_owned()
                .with_footer(ev.footer());
        }
        check_crc(&ev).map_err(|e| format!("event at byte {pos}: {e}"))?;
        out.push(RawEvent {
            bytes: bytes.to_vec(),
        });
        pos += size;
    }
    Ok(out)
}

/// Compare an event's stored CRC32 with the one computed over its bytes.
pub fn check_crc(ev: &Event) -> Result<(), String> {
    if let Ok(Some(alg)) = ev.footer().get_checksum_alg()
        && alg == mysql_async::binlog::BinlogChecksumAlg::BINLOG_CHECKSUM_ALG_CRC32
        && let Some(stored) = ev.checksum()
    {
        let want = u32::from_le_bytes(stored);
        let got = ev.calc_checksum(alg);
        if want != got {
            return Err(format!(
                "CRC32 mismatch (type {}, stored {want:08x}, computed {got:08x})",
                ev.header().event_type_raw()
            ));
        }
    }
    Ok(())
}

/// One transaction of a segment: its GTID and events (GTID event first).
#[derive(Clone, Debug, PartialEq)]
pub struct Transaction {
    pub gtid: Gtid,
    pub events: Vec<RawEvent>,
    /// Unix seconds of its commit (last) event.
    pub commit_timestamp: u32,
}

/// What a transaction's event means for its grouping.
pub enum Step {
    /// Part of the transaction.
    Continue,
    /// The transaction's last event.
    End,
}

/// A transaction being read, event by event after its GTID event.
#[derive(Clone, Debug)]
pub struct Grouping {
    pub gtid: Gtid,
    pub events: Vec<RawEvent>,
    /// MySQL: a `BEGIN` Query event opened it (else its one statement is DDL).
    begun: bool,
}

impl Grouping {
    pub fn new(gtid: Gtid, gtid_event: RawEvent) -> Self {
        Self {
            gtid,
            events: vec![gtid_event],
            begun: false,
        }
    }

    /// Add the next event; says whether it ended the transaction.
    pub fn push(&mut self, ev: RawEvent, checksummed: bool) -> Result<Step, String> {
        let xa = || {
            format!(
                "XA transaction {}: archiving XA transactions is not implemented",
                self.gtid
            )
        };
        if self.gtid.xa() {
            return Err(xa());
        }
        let step = match ev.type_code() {
            XID_EVENT => Step::End,
            XA_PREPARE_LOG_EVENT => return Err(xa()),
            TRANSACTION_PAYLOAD_EVENT => {
                return Err(
                    "a compressed transaction payload (binlog_transaction_compression is ON): not supported"
                        .into(),
                );
            }
            QUERY_EVENT => {
                let q = parse_query(&ev, checksummed)?;
                if q.query.len() >= 3 && q.query[..3].eq_ignore_ascii_case(b"XA ") {
                    return Err(xa());
                }
                if self.gtid.standalone()
                    || query_is(q.query, "COMMIT")
                    || query_is(q.query, "ROLLBACK")
                {
                    Step::End
                } else if query_is(q.query, "BEGIN") {
                    self.begun = true;
                    Step::Continue
                } else if matches!(self.gtid, Gtid::MySql { .. }) && !self.begun {
                    // MySQL DDL: the GTID event, then the statement alone.
                    Step::End
                } else {
                    Step::Continue
                }
            }
            _ => Step::Continue,
        };
        self.events.push(ev);
        Ok(step)
    }

    pub fn finish(self) -> Transaction {
        let commit_timestamp = self
            .events
            .last()
            .map(RawEvent::timestamp)
            .unwrap_or_default();
        Transaction {
            gtid: self.gtid,
            events: self.events,
            commit_timestamp,
        }
    }
}

/// A parsed, checked segment.
#[derive(Clone, Debug)]
pub struct Segment {
    pub fde: RawEvent,
    pub checksummed: bool,
    pub transactions: Vec<Transaction>,
}

/// Parse a decompressed segment: magic, format description, then complete
/// MariaDB transactions only.
pub fn parse_segment(raw: &[u8]) -> Result<Segment, String> {
    let rest = raw
        .strip_prefix(&BINLOG_MAGIC[..])
        .ok_or("no binlog magic")?;
    let mut events = split_events(rest)?.into_iter();
    let fde = events.next().ok_or("no format description event")?;
    if fde.type_code() != FORMAT_DESCRIPTION_EVENT {
        return Err(format!(
            "first event is type {}, not a format description",
            fde.type_code()
        ));
    }
    let checksummed = fde_checksummed(&fde);
    let mut transactions = Vec::new();
    let mut cur: Option<Grouping> = None;
    for ev in events {
        let code = ev.type_code();
        match cur.as_mut() {
            None => {
                if !starts_transaction(code) {
                    return Err(format!("event of type {code} outside a transaction"));
                }
                let gtid = Gtid::parse(&ev, checksummed)?;
                cur = Some(Grouping::new(gtid, ev));
            }
            Some(g) => {
                if starts_transaction(code) {
                    return Err(format!("transaction {} has no end", g.gtid));
                }
                if let Step::End = g.push(ev, checksummed)?
                    && let Some(done) = cur.take()
                {
                    transactions.push(done.finish());
                }
            }
        }
    }
    if let Some(g) = cur {
        return Err(format!("transaction {} is cut off", g.gtid));
    }
    Ok(Segment {
        fde,
        checksummed,
        transactions,
    })
}

/// The GTID position after applying `gtid` to `pos`.
pub fn advance(pos: &mut GtidSet, gtid: &Gtid) -> Result<(), GtidParseError> {
    match (pos, gtid) {
        (GtidSet::MariaDb(m), Gtid::Maria(g)) => {
            // One entry per domain: the position is the domain's last GTID.
            m.retain(|(d, _), _| *d != g.domain);
            m.insert((g.domain, g.server), g.seq);
            Ok(())
        }
        (set @ GtidSet::MySql(_), g @ Gtid::MySql { .. }) => {
            let text = if set.is_empty() {
                g.to_string()
            } else {
                format!("{set},{g}")
            };
            *set = GtidSet::parse(MySqlFlavor::MySQL, &text)?;
            Ok(())
        }
        (_, g) => Err(GtidParseError {
            text: g.to_string(),
            why: "a GTID of the other flavor",
        }),
    }
}

/// The flavor a manifest names.
pub fn manifest_flavor(m: &SegmentManifest) -> Result<MySqlFlavor, BinlogError> {
    match m.flavor.as_str() {
        "MariaDB" => Ok(MySqlFlavor::MariaDB),
        "MySQL" => Ok(MySqlFlavor::MySQL),
        other => Err(BinlogError::BadManifest {
            path: manifest_name(m.number),
            why: format!("unknown flavor {other:?}"),
        }),
    }
}

/// A position reduced to one GTID per domain, for comparisons.
pub fn normalize(flavor: MySqlFlavor, text: &str) -> Result<GtidSet, GtidParseError> {
    let set = GtidSet::parse(flavor, text)?;
    GtidSet::parse(flavor, &set.position())
}

fn store_err(action: &'static str, path: &Path) -> impl FnOnce(object_store::Error) -> BinlogError {
    let path = path.to_string();
    move |source| BinlogError::Store {
        action,
        path,
        source,
    }
}

/// Store a segment (compressed) and then its manifest. `describe` fills the
/// manifest from the stored size and sha256.
pub async fn put_segment(
    target: &Target,
    dir: &Path,
    number: u64,
    raw: &[u8],
    describe: impl FnOnce(String, u64) -> SegmentManifest,
) -> Result<SegmentManifest, BinlogError> {
    let zst = zstd::bulk::compress(raw, 3).map_err(|e| BinlogError::Corrupt {
        path: segment_name(number),
        why: format!("cannot compress: {e}"),
    })?;
    let sha = hex::encode(Sha256::digest(&zst));
    let size = zst.len() as u64;
    let path = dir.clone().join(segment_name(number));
    target
        .store
        .put(&path, PutPayload::from(zst))
        .await
        .map_err(store_err("write", &path))?;
    let meta = target
        .store
        .head(&path)
        .await
        .map_err(store_err("confirm", &path))?;
    if meta.size != size {
        return Err(BinlogError::Corrupt {
            path: path.to_string(),
            why: format!("stored {} bytes, wrote {size}", meta.size),
        });
    }
    let manifest = describe(sha, size);
    let mpath = dir.clone().join(manifest_name(number));
    let body = serde_json::to_vec_pretty(&manifest).map_err(|e| BinlogError::BadManifest {
        path: mpath.to_string(),
        why: e.to_string(),
    })?;
    target
        .store
        .put(&mpath, PutPayload::from(body))
        .await
        .map_err(store_err("write", &mpath))?;
    Ok(manifest)
}

/// Every segment manifest of an archive, by number.
pub async fn list_manifests(
    target: &Target,
    dir: &Path,
) -> Result<BTreeMap<u64, SegmentManifest>, BinlogError> {
    let objects: Vec<_> = target
        .store
        .list(Some(dir))
        .try_collect()
        .await
        .map_err(store_err("list", dir))?;
    let mut out = BTreeMap::new();
    for meta in objects {
        let Some(name) = meta.location.filename() else {
            continue;
        };
        let Some(number) = name
            .strip_suffix(".json")
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        let bytes = target
            .store
            .get(&meta.location)
            .await
            .map_err(store_err("read", &meta.location))?
            .bytes()
            .await
            .map_err(store_err("read", &meta.location))?;
        let m: SegmentManifest =
            serde_json::from_slice(&bytes).map_err(|e| BinlogError::BadManifest {
                path: meta.location.to_string(),
                why: e.to_string(),
            })?;
        if m.number != number || m.format_version != SEGMENT_FORMAT {
            return Err(BinlogError::BadManifest {
                path: meta.location.to_string(),
                why: format!("names segment {} of format {}", m.number, m.format_version),
            });
        }
        out.insert(number, m);
    }
    Ok(out)
}

/// Retention: delete the segments no restore from a base at or after
/// `oldest_base` (the GTID position of the oldest base backup kept) needs —
/// the leading segments whose end that position holds — keeping the last
/// segment always (the archiver resumes from its end). Each manifest is
/// deleted before its segment, so an interrupted prune leaves at most an
/// unlisted object, never a listed segment without its object. Returns the
/// segments deleted.
pub async fn prune(
    target: &Target,
    dir: &Path,
    flavor: MySqlFlavor,
    oldest_base: &str,
) -> Result<u64, BinlogError> {
    let base = normalize(flavor, oldest_base)?;
    let manifests = list_manifests(target, dir).await?;
    let last = manifests.keys().next_back().copied();
    let mut deleted = 0;
    for (n, m) in &manifests {
        if Some(*n) == last || !base.contains(&normalize(flavor, &m.end_position)?) {
            break;
        }
        for path in [
            dir.clone().join(manifest_name(*n)),
            dir.clone().join(m.object.as_str()),
        ] {
            match target.store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(store_err("delete", &path)(e)),
            }
        }
        deleted += 1;
    }
    Ok(deleted)
}

/// Fetch a segment, check its sha256 against the manifest, decompress and
/// parse it, and check it holds what the manifest says (transaction count,
/// first/last GTID, start and end positions).
pub async fn fetch_segment(
    target: &Target,
    dir: &Path,
    m: &SegmentManifest,
) -> Result<Segment, BinlogError> {
    let path = dir.clone().join(m.object.as_str());
    let corrupt = |why: String| BinlogError::Corrupt {
        path: path.to_string(),
        why,
    };
    let bytes = match target.store.get(&path).await {
        Ok(got) => got.bytes().await.map_err(store_err("read", &path))?,
        Err(object_store::Error::NotFound { .. }) => {
            return Err(BinlogError::Gap(format!(
                "segment {} ({path}) is listed in its manifest but missing",
                m.number
            )));
        }
        Err(e) => return Err(store_err("read", &path)(e)),
    };
    let sha = hex::encode(Sha256::digest(&bytes));
    if !sha.eq_ignore_ascii_case(&m.sha256) {
        return Err(corrupt(format!(
            "sha256 mismatch: manifest {}, object {sha}",
            m.sha256
        )));
    }
    let raw = zstd::decode_all(&bytes[..]).map_err(|e| corrupt(format!("zstd: {e}")))?;
    if raw.len() as u64 != m.raw_bytes {
        return Err(corrupt(format!(
            "{} bytes decompressed, manifest says {}",
            raw.len(),
            m.raw_bytes
        )));
    }
    let seg = parse_segment(&raw).map_err(corrupt)?;
    let n = seg.transactions.len() as u64;
    let first = seg.transactions.first().map(|t| t.gtid.to_string());
    let last = seg.transactions.last().map(|t| t.gtid.to_string());
    if n != m.transactions
        || first.as_deref() != Some(m.first_gtid.as_str())
        || last.as_deref() != Some(m.last_gtid.as_str())
    {
        return Err(corrupt(format!(
            "holds {n} transactions {first:?}..{last:?}, manifest says {} {}..{}",
            m.transactions, m.first_gtid, m.last_gtid
        )));
    }
    let flavor = manifest_flavor(m)?;
    let mut pos = normalize(flavor, &m.start_position)?;
    for t in &seg.transactions {
        advance(&mut pos, &t.gtid)?;
    }
    if pos != normalize(flavor, &m.end_position)? {
        return Err(corrupt(format!(
            "its transactions end at {}, manifest says {}",
            pos.position(),
            m.end_position
        )));
    }
    Ok(seg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_by_number() {
        assert_eq!(segment_name(7), "0000000007.binlog.zst");
        assert!(manifest_name(9) < manifest_name(10));
        let dir = archive_dir(&Path::from("team"), "ns", "db");
        assert_eq!(dir.as_ref(), "team/ns/db/binlog");
    }

    #[test]
    fn positions_advance_per_domain() {
        let mut p = normalize(MySqlFlavor::MariaDB, "0-100-5,1-101-2").unwrap();
        let maria = |seq| {
            Gtid::Maria(MariaGtid {
                domain: 0,
                server: 102,
                seq,
                flags: 0,
            })
        };
        advance(&mut p, &maria(6)).unwrap();
        assert_eq!(p.position(), "0-102-6,1-101-2");
        let u = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
        let mut p = normalize(MySqlFlavor::MySQL, &format!("{u}:1-5")).unwrap();
        let g = Gtid::MySql {
            sid: u.into(),
            gno: 6,
        };
        advance(&mut p, &g).unwrap();
        assert_eq!(p.position(), format!("{u}:1-6"));
        assert!(advance(&mut p, &maria(7)).is_err());
    }

    #[test]
    fn truncated_and_garbage_segments_are_refused() {
        assert!(parse_segment(b"nope").is_err());
        let mut raw = BINLOG_MAGIC.to_vec();
        raw.extend_from_slice(&[0u8; 10]);
        assert!(parse_segment(&raw).unwrap_err().contains("truncated"));
        let mut raw = BINLOG_MAGIC.to_vec();
        let mut header = vec![0u8; 19];
        header[9..13].copy_from_slice(&500u32.to_le_bytes());
        raw.extend_from_slice(&header);
        assert!(parse_segment(&raw).unwrap_err().contains("runs past"));
    }
}
