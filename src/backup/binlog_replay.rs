//! Replay archived binlog transactions into a restored server, up to a point
//! in time or a GTID, preserving GTIDs, as SQL from the restore process (no
//! extra binaries in the image) — the way `mysqlbinlog | mysql` does:
//!
//! * once per segment, a `BINLOG '<base64>'` statement carrying the
//!   segment's format description event;
//! * per transaction, the session's GTID (MariaDB `gtid_domain_id`,
//!   `server_id`, `gtid_seq_no`, then `BEGIN` unless the GTID event marks a
//!   standalone statement such as DDL; MySQL `gtid_next`, its `BEGIN` being
//!   a Query event) and timestamp, then every table-map
//!   and rows event as a `BINLOG` statement, Query events (DDL, DCL) as SQL
//!   with their database and session context (sql_mode, character sets,
//!   time zone, check flags ...), and `COMMIT` for the Xid event.
//!
//! Row-based binlogs only (the operator renders `binlog_format = ROW`):
//! statement-based events (INTVAR, RAND, USER_VAR, LOAD DATA), XA
//! transactions, groups ended by ROLLBACK, incident events and (MySQL)
//! compressed transaction payloads are refused
//! with [`BinlogError::Unsupported`], before anything is applied when they
//! are found by the verification pass.
//!
//! Before anything is applied, every segment needed is fetched, checked
//! against its manifest's sha256, parsed (every event's CRC32) and checked
//! to hold what the manifest says, and the segments must form an unbroken
//! chain from the base backup's position to the target: a tampered, missing
//! or foreign segment fails the replay with nothing applied.
//!
//! Time resolution is one second (binlog event timestamps): a transaction is
//! applied when its commit event's second is at or before the target's
//! second, and replay stops at the first transaction after it.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use mysql_async::Conn;
use mysql_async::prelude::Queryable;
use object_store::path::Path;

use super::binlog::{
    ANNOTATE_ROWS_EVENT, BEGIN_LOAD_QUERY_EVENT, BinlogError, DELETE_ROWS_EVENT,
    DELETE_ROWS_EVENT_V1, EXECUTE_LOAD_QUERY_EVENT, Gtid, IGNORABLE_EVENT, INCIDENT_EVENT,
    INTVAR_EVENT, QUERY_EVENT, RAND_EVENT, ROWS_QUERY_EVENT, RawEvent, SegmentManifest,
    TABLE_MAP_EVENT, Transaction, UPDATE_ROWS_EVENT, UPDATE_ROWS_EVENT_V1, USER_VAR_EVENT,
    WRITE_ROWS_EVENT, WRITE_ROWS_EVENT_V1, XID_EVENT, fetch_segment, list_manifests,
    manifest_flavor, normalize, parse_query, query_is,
};
use super::target::Target;
use crate::api::MySqlFlavor;
use crate::mysql::backup::Endpoint;
use crate::mysql::flavor::{Dialect, quote_ident, quote_str};
use crate::mysql::gtid::GtidSet;
use crate::mysql::observe::connect;

/// Where replay stops.
#[derive(Clone, Debug, PartialEq)]
pub enum StopAt {
    /// Every transaction committed at or before this time (second resolution).
    Time(DateTime<Utc>),
    /// Up to and including this GTID (MariaDB `domain-server-seq`).
    Gtid(String),
}

#[derive(Clone, Debug)]
pub struct ReplayOptions {
    pub connect_timeout: Duration,
    pub statement_timeout: Duration,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(600),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ReplaySummary {
    pub segments: u64,
    /// Transactions applied.
    pub transactions: u64,
    /// Transactions of the first segment the base already held.
    pub skipped: u64,
    pub last_gtid: Option<String>,
    pub last_timestamp: Option<i64>,
    /// The server's GTID position afterwards.
    pub position: String,
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Which segments (by number) a replay from `base` to `stop` needs, checking
/// the chain: consecutive numbers, each starting where the one before ended,
/// the first starting at or before the base position.
pub fn plan(
    flavor: MySqlFlavor,
    manifests: &BTreeMap<u64, SegmentManifest>,
    base: &GtidSet,
    stop: &StopAt,
) -> Result<Vec<u64>, BinlogError> {
    let segs: Vec<&SegmentManifest> = manifests.values().collect();
    let Some(last) = segs.last() else {
        return Err(BinlogError::OutOfRange(
            "the binlog archive holds no segments".into(),
        ));
    };
    let stop_gtid = match stop {
        StopAt::Gtid(g) => {
            let g = normalize(flavor, g)?;
            if base.contains(&g) {
                return Err(BinlogError::OutOfRange(format!(
                    "the base backup (at {}) already holds {}; restore an older backup",
                    base.position(),
                    g.position()
                )));
            }
            Some(g)
        }
        StopAt::Time(_) => None,
    };
    let covered_until = |m: &SegmentManifest| parse_time(&m.archived_at);
    let time_covered = |t: &DateTime<Utc>| -> Result<(), BinlogError> {
        match covered_until(last) {
            Some(until) if *t <= until => Ok(()),
            _ => Err(BinlogError::OutOfRange(format!(
                "the binlog archive reaches only until {} (segment {}, position {}); {} is later",
                last.archived_at,
                last.number,
                last.end_position,
                t.to_rfc3339()
            ))),
        }
    };
    let mut first = None;
    for m in &segs {
        if !base.contains(&normalize(flavor, &m.end_position)?) {
            first = Some(*m);
            break;
        }
    }
    let Some(first) = first else {
        // The archive holds nothing after the base.
        return match (stop, &stop_gtid) {
            (StopAt::Time(t), _) => time_covered(t).map(|()| Vec::new()),
            (_, Some(g)) => Err(BinlogError::OutOfRange(format!(
                "{} is not in the binlog archive, which ends at {}",
                g.position(),
                last.end_position
            ))),
            _ => Ok(Vec::new()),
        };
    };
    if !base.contains(&normalize(flavor, &first.start_position)?) {
        return Err(BinlogError::Gap(format!(
            "segment {} starts at {} but the base backup is at {}: the transactions between are not archived",
            first.number,
            first.start_position,
            base.position()
        )));
    }
    let mut out = Vec::new();
    let mut prev: Option<&SegmentManifest> = None;
    for m in segs.iter().filter(|m| m.number >= first.number) {
        if let Some(p) = prev {
            if m.number != p.number + 1 {
                return Err(BinlogError::Gap(format!(
                    "segments {} to {} are missing (after position {})",
                    p.number + 1,
                    m.number - 1,
                    p.end_position
                )));
            }
            if normalize(flavor, &m.start_position)? != normalize(flavor, &p.end_position)? {
                return Err(BinlogError::Gap(format!(
                    "segment {} ends at {} but segment {} starts at {}",
                    p.number, p.end_position, m.number, m.start_position
                )));
            }
        }
        out.push(m.number);
        prev = Some(m);
        let done = match (stop, &stop_gtid) {
            (_, Some(g)) => normalize(flavor, &m.end_position)?.contains(g),
            (StopAt::Time(t), _) => m.last_timestamp > t.timestamp(),
            _ => false,
        };
        if done {
            return Ok(out);
        }
    }
    match (stop, &stop_gtid) {
        (StopAt::Time(t), _) => time_covered(t).map(|()| out),
        (_, Some(g)) => Err(BinlogError::OutOfRange(format!(
            "{} is not in the binlog archive, which ends at {}",
            g.position(),
            last.end_position
        ))),
        _ => Ok(out),
    }
}

/// A replay checked before anything is applied: the segments from the
/// base backup's position to the stop point, each fetched and verified.
#[derive(Clone, Debug)]
pub struct ReplayPlan {
    flavor: MySqlFlavor,
    base: GtidSet,
    stop: StopAt,
    manifests: BTreeMap<u64, SegmentManifest>,
    needed: Vec<u64>,
}

impl ReplayPlan {
    /// Segments the replay reads.
    pub fn segments(&self) -> usize {
        self.needed.len()
    }

    /// Whether `position` (a restored server's GTID position) is the base
    /// this plan starts from.
    pub fn starts_at(&self, position: &str) -> Result<bool, BinlogError> {
        Ok(normalize(self.flavor, position)? == self.base)
    }
}

/// Check a replay from `base_position` to `stop` against the archive in
/// `dir` without touching any server: the chain of segments (no gap, the
/// point inside the archive) and every segment needed (sha256, events,
/// supported content). A point-in-time restore calls this before it loads
/// the base backup, so a refused point leaves the server empty.
pub async fn prepare(
    flavor: MySqlFlavor,
    target: &Target,
    dir: &Path,
    base_position: &str,
    stop: &StopAt,
) -> Result<ReplayPlan, BinlogError> {
    let base = normalize(flavor, base_position)?;
    let manifests = list_manifests(target, dir).await?;
    let needed = plan(flavor, &manifests, &base, stop)?;
    for n in &needed {
        let m = &manifests[n];
        if manifest_flavor(m)? != flavor {
            return Err(BinlogError::Unsupported(format!(
                "segment {} holds {} binlogs; the server is {:?}",
                m.number, m.flavor, flavor
            )));
        }
        let seg = fetch_segment(target, dir, m).await?;
        for t in &seg.transactions {
            check_supported(t, seg.checksummed)?;
        }
    }
    Ok(ReplayPlan {
        flavor,
        base,
        stop: stop.clone(),
        manifests,
        needed,
    })
}

/// Replay archived transactions after `base_position` (the restored base
/// backup's GTID position) into `db`, up to `stop`: [`prepare`], then
/// [`apply_plan`].
pub async fn replay(
    db: &Endpoint,
    target: &Target,
    dir: &Path,
    base_position: &str,
    stop: &StopAt,
    opts: &ReplayOptions,
) -> Result<ReplaySummary, BinlogError> {
    let p = prepare(db.flavor, target, dir, base_position, stop).await?;
    apply_plan(db, target, dir, &p, opts).await
}

/// Apply a prepared replay into `db`, whose GTID position must be the
/// plan's base.
pub async fn apply_plan(
    db: &Endpoint,
    target: &Target,
    dir: &Path,
    p: &ReplayPlan,
    opts: &ReplayOptions,
) -> Result<ReplaySummary, BinlogError> {
    let flavor = db.flavor;
    if flavor != p.flavor {
        return Err(BinlogError::Unsupported(format!(
            "the replay was planned for {:?}; the server is {flavor:?}",
            p.flavor
        )));
    }
    let mut c = connect(&db.host, db.port, &db.login, opts.connect_timeout).await?;
    let t = opts.statement_timeout;
    // MySQL: a fenced server (super_read_only) refuses even root; read_only
    // stays on, so applications still cannot write.
    let d = Dialect(flavor);
    let mut undo = Vec::new();
    if flavor == MySqlFlavor::MySQL {
        let sro: Option<i64> = c
            .query_first("SELECT @@GLOBAL.super_read_only")
            .await
            .map_err(sql("read super_read_only"))?;
        if sro == Some(1) {
            for s in d.lift_super_read_only() {
                exec(&mut c, &s, t).await?;
            }
            undo = d.restore_super_read_only();
        }
    }
    let res = apply_all(&mut c, target, dir, p, t).await;
    for s in undo {
        exec(&mut c, &s, t).await?;
    }
    let summary = res?;
    tracing::info!(transactions = summary.transactions, last = ?summary.last_gtid, position = %summary.position, "binlog replay finished");
    Ok(summary)
}

async fn apply_all(
    c: &mut Conn,
    target: &Target,
    dir: &Path,
    p: &ReplayPlan,
    t: Duration,
) -> Result<ReplaySummary, BinlogError> {
    let (flavor, base, stop) = (p.flavor, &p.base, &p.stop);
    let stop_gtid = match stop {
        StopAt::Gtid(g) => Some(normalize(flavor, g)?),
        StopAt::Time(_) => None,
    };
    let stop_secs = match stop {
        StopAt::Time(t) => Some(t.timestamp()),
        StopAt::Gtid(_) => None,
    };
    exec(c, "SET SESSION sql_log_bin = 1", t).await?;
    let mut summary = ReplaySummary {
        segments: 0,
        transactions: 0,
        skipped: 0,
        last_gtid: None,
        last_timestamp: None,
        position: String::new(),
    };
    'segments: for n in &p.needed {
        // Fetched (and verified) again: the store is not trusted to return
        // the same bytes twice.
        let seg = fetch_segment(target, dir, &p.manifests[n]).await?;
        summary.segments += 1;
        exec(c, &binlog_statement(&[&seg.fde]), t).await?;
        for tx in &seg.transactions {
            let gtid_set = tx.gtid.as_set()?;
            if base.contains(&gtid_set) {
                summary.skipped += 1;
                continue;
            }
            if let Some(s) = stop_secs
                && i64::from(tx.commit_timestamp) > s
            {
                break 'segments;
            }
            if let Err(e) = apply(c, tx, seg.checksummed, t).await {
                let _ = exec(c, "ROLLBACK", t).await;
                if flavor == MySqlFlavor::MySQL {
                    let _ = exec(c, "SET @@session.gtid_next = 'AUTOMATIC'", t).await;
                }
                return Err(e);
            }
            summary.transactions += 1;
            summary.last_gtid = Some(tx.gtid.to_string());
            summary.last_timestamp = Some(i64::from(tx.commit_timestamp));
            if let Some(g) = &stop_gtid
                && gtid_set.contains(g)
            {
                break 'segments;
            }
        }
    }
    exec(c, "SET SESSION timestamp = DEFAULT", t).await?;
    let query = match flavor {
        MySqlFlavor::MariaDB => "SELECT @@GLOBAL.gtid_binlog_pos",
        MySqlFlavor::MySQL => "SELECT @@GLOBAL.gtid_executed",
    };
    let pos: Option<String> = c
        .query_first(query)
        .await
        .map_err(sql("read the GTID position"))?;
    let pos: String = pos.unwrap_or_default().split_whitespace().collect();
    // MariaDB: the replayed transactions are in this server's binlog; make
    // its replication position agree (gtid_current_pos follows the slave
    // position for GTIDs another server originated).
    if summary.transactions > 0 && flavor == MySqlFlavor::MariaDB {
        exec(
            c,
            &format!("SET GLOBAL gtid_slave_pos = {}", quote_str(&pos)),
            t,
        )
        .await?;
    }
    summary.position = pos;
    Ok(summary)
}

fn sql(context: &str) -> impl FnOnce(mysql_async::Error) -> BinlogError + '_ {
    move |source| BinlogError::Sql {
        context: context.to_string(),
        source,
    }
}

async fn exec(c: &mut Conn, stmt: &str, t: Duration) -> Result<(), BinlogError> {
    let short = || stmt.chars().take(120).collect::<String>();
    match tokio::time::timeout(t, c.query_drop(stmt)).await {
        Ok(r) => r.map_err(|source| BinlogError::Sql {
            context: short(),
            source,
        }),
        Err(_) => Err(BinlogError::Stream(format!("timed out: {}", short()))),
    }
}

/// A `BINLOG` statement carrying events (base64 of their stored bytes).
pub fn binlog_statement(events: &[&RawEvent]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    let body: Vec<String> = events.iter().map(|e| b64.encode(&e.bytes)).collect();
    format!("BINLOG '\n{}\n'", body.join("\n"))
}

fn unsupported(t: &Transaction, what: &str) -> BinlogError {
    BinlogError::Unsupported(format!(
        "transaction {} holds {what}; only row-based binlogs (binlog_format = ROW, as the operator renders) are replayed",
        t.gtid
    ))
}

/// Refuse transactions replay cannot apply faithfully.
fn check_supported(t: &Transaction, checksummed: bool) -> Result<(), BinlogError> {
    if t.gtid.xa() {
        return Err(unsupported(t, "an XA transaction"));
    }
    for ev in &t.events[1..] {
        match ev.type_code() {
            INTVAR_EVENT | RAND_EVENT | USER_VAR_EVENT => {
                return Err(unsupported(t, "statement-based events"));
            }
            BEGIN_LOAD_QUERY_EVENT | EXECUTE_LOAD_QUERY_EVENT => {
                return Err(unsupported(t, "a statement-based LOAD DATA"));
            }
            INCIDENT_EVENT => {
                return Err(unsupported(t, "an incident event (the source lost events)"));
            }
            QUERY_EVENT => {
                let q = parse_query(ev, checksummed).map_err(BinlogError::Stream)?;
                if q.error_code != 0 {
                    return Err(unsupported(
                        t,
                        &format!(
                            "a statement that failed on the source (error {})",
                            q.error_code
                        ),
                    ));
                }
                if query_is(q.query, "ROLLBACK") {
                    return Err(unsupported(t, "a group ended by ROLLBACK"));
                }
                session_context(q.status_vars).map_err(|e| unsupported(t, &e))?;
            }
            XID_EVENT | TABLE_MAP_EVENT | WRITE_ROWS_EVENT | UPDATE_ROWS_EVENT
            | DELETE_ROWS_EVENT | WRITE_ROWS_EVENT_V1 | UPDATE_ROWS_EVENT_V1
            | DELETE_ROWS_EVENT_V1 | ANNOTATE_ROWS_EVENT | ROWS_QUERY_EVENT | IGNORABLE_EVENT => {}
            other => return Err(unsupported(t, &format!("an event of type {other}"))),
        }
    }
    Ok(())
}

/// Apply one (checked) transaction.
async fn apply(
    c: &mut Conn,
    tx: &Transaction,
    checksummed: bool,
    t: Duration,
) -> Result<(), BinlogError> {
    let g = &tx.gtid;
    let started = tx.events[0].timestamp();
    match g {
        Gtid::Maria(m) => {
            exec(
                c,
                &format!(
                    "SET @@session.gtid_domain_id = {}, @@session.server_id = {}, @@session.gtid_seq_no = {}, @@session.timestamp = {started}",
                    m.domain, m.server, m.seq
                ),
                t,
            )
            .await?;
            // MariaDB's GTID event stands for BEGIN.
            if !m.standalone() {
                exec(c, "BEGIN", t).await?;
            }
        }
        Gtid::MySql { .. } => {
            exec(
                c,
                &format!(
                    "SET @@session.gtid_next = {}, @@session.timestamp = {started}",
                    quote_str(&g.to_string())
                ),
                t,
            )
            .await?;
        }
    }
    let mut rows: Vec<&RawEvent> = Vec::new();
    for ev in &tx.events[1..] {
        match ev.type_code() {
            TABLE_MAP_EVENT | WRITE_ROWS_EVENT | UPDATE_ROWS_EVENT | DELETE_ROWS_EVENT
            | WRITE_ROWS_EVENT_V1 | UPDATE_ROWS_EVENT_V1 | DELETE_ROWS_EVENT_V1 => rows.push(ev),
            XID_EVENT => {
                flush_rows(c, &mut rows, t).await?;
                exec(
                    c,
                    &format!("SET @@session.timestamp = {}", ev.timestamp()),
                    t,
                )
                .await?;
                exec(c, "COMMIT", t).await?;
            }
            QUERY_EVENT => {
                flush_rows(c, &mut rows, t).await?;
                let q = parse_query(ev, checksummed).map_err(BinlogError::Stream)?;
                exec(
                    c,
                    &format!("SET @@session.timestamp = {}", ev.timestamp()),
                    t,
                )
                .await?;
                if query_is(q.query, "COMMIT") || query_is(q.query, "BEGIN") {
                    exec(c, &String::from_utf8_lossy(q.query), t).await?;
                    continue;
                }
                let schema = String::from_utf8_lossy(q.schema);
                if !schema.is_empty() {
                    exec(c, &format!("USE {}", quote_ident(&schema)), t).await?;
                }
                for s in session_context(q.status_vars).map_err(BinlogError::Unsupported)? {
                    exec(c, &s, t).await?;
                }
                match tokio::time::timeout(t, c.query_drop(q.query)).await {
                    Ok(r) => r.map_err(|source| BinlogError::Sql {
                        context: format!(
                            "replay {} ({})",
                            g,
                            String::from_utf8_lossy(q.query)
                                .chars()
                                .take(120)
                                .collect::<String>()
                        ),
                        source,
                    })?,
                    Err(_) => return Err(BinlogError::Stream(format!("replay {g} timed out"))),
                }
            }
            _ => {}
        }
    }
    if !rows.is_empty() {
        return Err(BinlogError::Stream(format!(
            "transaction {g} ends with rows events and no commit"
        )));
    }
    if let Gtid::MySql { .. } = g {
        exec(c, "SET @@session.gtid_next = 'AUTOMATIC'", t).await?;
    }
    Ok(())
}

async fn flush_rows(
    c: &mut Conn,
    rows: &mut Vec<&RawEvent>,
    t: Duration,
) -> Result<(), BinlogError> {
    if rows.is_empty() {
        return Ok(());
    }
    // One BINLOG statement per table-map + rows group, bounded in size.
    let mut batch: Vec<&RawEvent> = Vec::new();
    let mut bytes = 0;
    for ev in rows.drain(..) {
        if ev.type_code() == TABLE_MAP_EVENT && bytes > (4 << 20) {
            exec(c, &binlog_statement(&batch), t).await?;
            batch.clear();
            bytes = 0;
        }
        bytes += ev.bytes.len();
        batch.push(ev);
    }
    exec(c, &binlog_statement(&batch), t).await
}

// Query event status variable codes.
const Q_FLAGS2: u8 = 0;
const Q_SQL_MODE: u8 = 1;
const Q_CATALOG: u8 = 2;
const Q_AUTO_INCREMENT: u8 = 3;
const Q_CHARSET: u8 = 4;
const Q_TIME_ZONE: u8 = 5;
const Q_CATALOG_NZ: u8 = 6;
const Q_LC_TIME_NAMES: u8 = 7;
const Q_CHARSET_DATABASE: u8 = 8;
const Q_TABLE_MAP_FOR_UPDATE: u8 = 9;
const Q_MASTER_DATA_WRITTEN: u8 = 10;
const Q_INVOKER: u8 = 11;
const Q_UPDATED_DB_NAMES: u8 = 12;
const Q_MICROSECONDS: u8 = 13;
const Q_EXPLICIT_DEFAULTS_FOR_TIMESTAMP: u8 = 16;
const Q_DDL_LOGGED_WITH_XID: u8 = 17;
const Q_DEFAULT_COLLATION_FOR_UTF8MB4: u8 = 18;
const Q_SQL_REQUIRE_PRIMARY_KEY: u8 = 19;
const Q_DEFAULT_TABLE_ENCRYPTION: u8 = 20;
const Q_HRNOW: u8 = 128;
const Q_XID: u8 = 129;
const Q_GTID_FLAGS3: u8 = 130;

const OPTION_AUTO_IS_NULL: u32 = 1 << 14;
const OPTION_NO_FOREIGN_KEY_CHECKS: u32 = 1 << 26;
const OPTION_RELAXED_UNIQUE_CHECKS: u32 = 1 << 27;

/// The session statements reproducing a Query event's context (its status
/// variables). An unknown variable is refused: its length is unknown, so
/// nothing after it could be read.
pub fn session_context(vars: &[u8]) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut i = 0usize;
    let take = |i: &mut usize, n: usize| -> Result<&[u8], String> {
        let s = vars
            .get(*i..*i + n)
            .ok_or_else(|| "truncated query status variables".to_string())?;
        *i += n;
        Ok(s)
    };
    let u16_at = |b: &[u8], o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
    while i < vars.len() {
        let code = vars[i];
        i += 1;
        match code {
            Q_FLAGS2 => {
                let b = take(&mut i, 4)?;
                let f = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                out.push(format!(
                    "SET @@session.foreign_key_checks = {}, @@session.unique_checks = {}, @@session.sql_auto_is_null = {}",
                    u8::from(f & OPTION_NO_FOREIGN_KEY_CHECKS == 0),
                    u8::from(f & OPTION_RELAXED_UNIQUE_CHECKS == 0),
                    u8::from(f & OPTION_AUTO_IS_NULL != 0),
                ));
            }
            Q_SQL_MODE => {
                let b = take(&mut i, 8)?;
                let m = u64::from_le_bytes(b.try_into().map_err(|_| "sql_mode")?);
                out.push(format!("SET @@session.sql_mode = {m}"));
            }
            Q_CATALOG => {
                let n = *take(&mut i, 1)?.first().unwrap_or(&0) as usize;
                take(&mut i, n + 1)?;
            }
            Q_AUTO_INCREMENT => {
                let b = take(&mut i, 4)?;
                out.push(format!(
                    "SET @@session.auto_increment_increment = {}, @@session.auto_increment_offset = {}",
                    u16_at(b, 0),
                    u16_at(b, 2)
                ));
            }
            Q_CHARSET => {
                let b = take(&mut i, 6)?;
                out.push(format!(
                    "SET @@session.character_set_client = {}, @@session.collation_connection = {}, @@session.collation_server = {}",
                    u16_at(b, 0),
                    u16_at(b, 2),
                    u16_at(b, 4)
                ));
            }
            Q_TIME_ZONE => {
                let n = *take(&mut i, 1)?.first().unwrap_or(&0) as usize;
                let tz = String::from_utf8_lossy(take(&mut i, n)?).to_string();
                out.push(format!("SET @@session.time_zone = {}", quote_str(&tz)));
            }
            Q_CATALOG_NZ => {
                let n = *take(&mut i, 1)?.first().unwrap_or(&0) as usize;
                take(&mut i, n)?;
            }
            Q_LC_TIME_NAMES => {
                let b = take(&mut i, 2)?;
                out.push(format!("SET @@session.lc_time_names = {}", u16_at(b, 0)));
            }
            Q_CHARSET_DATABASE => {
                let b = take(&mut i, 2)?;
                out.push(format!(
                    "SET @@session.collation_database = {}",
                    u16_at(b, 0)
                ));
            }
            Q_TABLE_MAP_FOR_UPDATE | Q_DDL_LOGGED_WITH_XID | Q_XID => {
                take(&mut i, 8)?;
            }
            Q_MASTER_DATA_WRITTEN => {
                take(&mut i, 4)?;
            }
            Q_INVOKER => {
                let n = *take(&mut i, 1)?.first().unwrap_or(&0) as usize;
                take(&mut i, n)?;
                let n = *take(&mut i, 1)?.first().unwrap_or(&0) as usize;
                take(&mut i, n)?;
            }
            Q_UPDATED_DB_NAMES => {
                let count = *take(&mut i, 1)?.first().unwrap_or(&0);
                // 254: more databases than listed (none are).
                if count != 254 {
                    for _ in 0..count {
                        let end = vars[i..]
                            .iter()
                            .position(|&b| b == 0)
                            .ok_or("unterminated database name")?;
                        i += end + 1;
                    }
                }
            }
            Q_MICROSECONDS | Q_HRNOW => {
                take(&mut i, 3)?;
            }
            Q_EXPLICIT_DEFAULTS_FOR_TIMESTAMP => {
                let b = take(&mut i, 1)?;
                out.push(format!(
                    "SET @@session.explicit_defaults_for_timestamp = {}",
                    u8::from(b[0] != 0)
                ));
            }
            Q_DEFAULT_COLLATION_FOR_UTF8MB4 => {
                let b = take(&mut i, 2)?;
                out.push(format!(
                    "SET @@session.default_collation_for_utf8mb4 = {}",
                    u16_at(b, 0)
                ));
            }
            Q_SQL_REQUIRE_PRIMARY_KEY => {
                let b = take(&mut i, 1)?;
                out.push(format!("SET @@session.sql_require_primary_key = {}", b[0]));
            }
            Q_DEFAULT_TABLE_ENCRYPTION => {
                let b = take(&mut i, 1)?;
                out.push(format!("SET @@session.default_table_encryption = {}", b[0]));
            }
            Q_GTID_FLAGS3 => {
                take(&mut i, 1)?;
            }
            other => return Err(format!("a query status variable of unknown type {other}")),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(n: u64, start: &str, end: &str, last_ts: i64) -> SegmentManifest {
        SegmentManifest {
            format_version: 1,
            flavor: "MariaDB".into(),
            number: n,
            object: super::super::binlog::segment_name(n),
            start_position: start.into(),
            end_position: end.into(),
            first_gtid: String::new(),
            last_gtid: String::new(),
            first_timestamp: last_ts - 1,
            last_timestamp: last_ts,
            transactions: 1,
            events: 3,
            raw_bytes: 1,
            size_bytes: 1,
            sha256: String::new(),
            source: "db-0".into(),
            archived_at: "2026-11-30T12:00:10Z".into(),
        }
    }

    fn archive() -> BTreeMap<u64, SegmentManifest> {
        [
            m(1, "0-100-5", "0-100-8", 100),
            m(2, "0-100-8", "0-100-12", 200),
            m(3, "0-100-12", "0-100-20", 300),
        ]
        .into_iter()
        .map(|m| (m.number, m))
        .collect()
    }

    const F: MySqlFlavor = MySqlFlavor::MariaDB;
    fn pos(s: &str) -> GtidSet {
        normalize(F, s).unwrap()
    }
    fn at(secs: i64) -> StopAt {
        StopAt::Time(DateTime::from_timestamp(secs, 0).unwrap())
    }

    #[test]
    fn plans_from_the_base_to_the_stop_point() {
        let a = archive();
        assert_eq!(plan(F, &a, &pos("0-100-6"), &at(150)).unwrap(), vec![1, 2]);
        assert_eq!(plan(F, &a, &pos("0-100-8"), &at(150)).unwrap(), vec![2]);
        assert_eq!(
            plan(F, &a, &pos("0-100-9"), &StopAt::Gtid("0-100-13".into())).unwrap(),
            vec![2, 3]
        );
        // A base past the whole archive, a time the archive covers: nothing.
        assert_eq!(
            plan(F, &a, &pos("0-100-20"), &at(250)).unwrap(),
            Vec::<u64>::new()
        );
    }

    #[test]
    fn gaps_and_points_beyond_the_archive_are_refused() {
        let mut a = archive();
        a.remove(&2);
        let e = plan(F, &a, &pos("0-100-6"), &at(250)).unwrap_err();
        assert!(e.to_string().contains("segments 2 to 2 are missing"), "{e}");
        let e = plan(F, &archive(), &pos("0-100-3"), &at(250)).unwrap_err();
        assert!(matches!(e, BinlogError::Gap(_)), "{e}");
        let mut a = archive();
        a.get_mut(&3).unwrap().start_position = "0-100-11".into();
        assert!(matches!(
            plan(F, &a, &pos("0-100-6"), &at(1000)),
            Err(BinlogError::Gap(_))
        ));
        let late = StopAt::Time("2026-11-30T13:00:00Z".parse().unwrap());
        assert!(matches!(
            plan(F, &archive(), &pos("0-100-6"), &late),
            Err(BinlogError::OutOfRange(_))
        ));
        assert!(matches!(
            plan(
                F,
                &archive(),
                &pos("0-100-6"),
                &StopAt::Gtid("0-100-21".into())
            ),
            Err(BinlogError::OutOfRange(_))
        ));
        assert!(matches!(
            plan(
                F,
                &archive(),
                &pos("0-100-6"),
                &StopAt::Gtid("0-100-4".into())
            ),
            Err(BinlogError::OutOfRange(_))
        ));
    }

    #[test]
    fn session_context_of_status_variables() {
        let mut v = vec![Q_FLAGS2];
        v.extend_from_slice(&(OPTION_NO_FOREIGN_KEY_CHECKS).to_le_bytes());
        v.push(Q_SQL_MODE);
        v.extend_from_slice(&1_411_383_296u64.to_le_bytes());
        v.push(Q_TIME_ZONE);
        v.push(6);
        v.extend_from_slice(b"SYSTEM");
        v.push(Q_HRNOW);
        v.extend_from_slice(&[1, 2, 3]);
        let s = session_context(&v).unwrap();
        assert_eq!(
            s,
            vec![
                "SET @@session.foreign_key_checks = 0, @@session.unique_checks = 1, @@session.sql_auto_is_null = 0",
                "SET @@session.sql_mode = 1411383296",
                "SET @@session.time_zone = 'SYSTEM'",
            ]
        );
        assert!(
            session_context(&[77, 1])
                .unwrap_err()
                .contains("unknown type 77")
        );
        assert!(session_context(&[Q_SQL_MODE, 1]).is_err());
    }
}
