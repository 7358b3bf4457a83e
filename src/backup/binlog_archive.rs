//! Continuous binlog archiving: stream binlog events from a member as a
//! replication client, from a GTID position, and store them in segments cut
//! at transaction boundaries (format in [`super::binlog`]).
//!
//! The archiver registers with [`ARCHIVER_SERVER_ID`], a server id the
//! operator never gives a member (members get `serverIdBase + ordinal`).
//! MariaDB: a GTID dump (`@slave_connect_state`, `@mariadb_slave_capability`
//! and strict mode); MySQL: `COM_BINLOG_DUMP_GTID` with the archived GTID
//! set. Any member with `log_slave_updates` / `log_replica_updates`
//! (rendered by the operator) serves it, so the archive continues across a
//! primary change.
//! On start it resumes from the last archived segment's end position; only
//! an empty archive takes the caller's start position (the base backup's).
//!
//! A segment is cut when it reaches `max_segment_bytes`, when its oldest
//! transaction has waited `max_delay`, when the stream's format changes, and
//! on stop. Transactions still open are never stored: the next run streams
//! them again from the last stored position.

use std::time::{Duration, Instant};

use futures::StreamExt;
use mysql_async::binlog::BinlogVersion;
use mysql_async::binlog::events::Event;
use mysql_async::prelude::Queryable;
use mysql_async::{BinlogStreamRequest, Sid};
use object_store::path::Path;
use tokio_util::sync::CancellationToken;

use super::binlog::{
    BINLOG_CHECKPOINT_EVENT, BINLOG_MAGIC, BinlogError, FORMAT_DESCRIPTION_EVENT, GTID_LIST_EVENT,
    Grouping, Gtid, HEARTBEAT_EVENT, IGNORABLE_EVENT, PREVIOUS_GTIDS_EVENT, ROTATE_EVENT, RawEvent,
    SEGMENT_FORMAT, STOP_EVENT, SegmentManifest, Step, advance, check_crc, fde_checksummed,
    list_manifests, normalize, put_segment, segment_name, starts_transaction,
};
use super::target::Target;
use crate::api::MySqlFlavor;
use crate::mysql::backup::Endpoint;
use crate::mysql::flavor::quote_str;
use crate::mysql::gtid::GtidSet;
use crate::mysql::observe::connect;

/// The replication server id of binlog archivers: the largest server id,
/// above every member's `serverIdBase + ordinal` (the CRD allows at most
/// 4294967000 + 99), so an archiver never takes a member's id.
pub const ARCHIVER_SERVER_ID: u32 = u32::MAX;

#[derive(Clone, Debug)]
pub struct ArchiveOptions {
    pub server_id: u32,
    /// Longest time a committed transaction waits before its segment is cut.
    pub max_delay: Duration,
    /// Segment size (decompressed) at which it is cut.
    pub max_segment_bytes: usize,
    pub connect_timeout: Duration,
    /// The source sends a heartbeat after this long without events; a
    /// stream silent for three periods is given up (a dead peer), and the
    /// next run resumes from the archive.
    pub heartbeat: Duration,
    /// Stop (after storing) once the archive holds this GTID position.
    pub until: Option<String>,
    /// Receives the manifest of every segment stored.
    pub progress: Option<std::sync::Arc<tokio::sync::watch::Sender<Option<SegmentManifest>>>>,
}

impl Default for ArchiveOptions {
    fn default() -> Self {
        Self {
            server_id: ARCHIVER_SERVER_ID,
            max_delay: Duration::from_secs(60),
            max_segment_bytes: 16 << 20,
            connect_timeout: Duration::from_secs(5),
            heartbeat: Duration::from_secs(5),
            until: None,
            progress: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ArchiveSummary {
    /// Segments stored by this run.
    pub segments: u64,
    pub transactions: u64,
    /// Position the archive ends at.
    pub position: String,
}

/// The segment being filled.
struct Pending {
    number: u64,
    fde: Option<RawEvent>,
    raw: Vec<u8>,
    start: GtidSet,
    first_gtid: Option<Gtid>,
    last_gtid: Option<Gtid>,
    first_ts: u32,
    last_ts: u32,
    transactions: u64,
    events: u64,
    since: Option<Instant>,
}

impl Pending {
    fn new(number: u64, start: GtidSet, fde: Option<RawEvent>) -> Self {
        let mut raw = BINLOG_MAGIC.to_vec();
        let mut events = 0;
        if let Some(f) = &fde {
            raw.extend_from_slice(&f.bytes);
            events = 1;
        }
        Self {
            number,
            fde,
            raw,
            start,
            first_gtid: None,
            last_gtid: None,
            first_ts: 0,
            last_ts: 0,
            transactions: 0,
            events,
            since: None,
        }
    }
}

/// Archive binlog events of `source` into `dir` of `target` until `stop` is
/// cancelled (or `opts.until` is reached), then store what is complete.
/// `start`: where an empty archive begins (the base backup's GTID position).
pub async fn archive(
    source: &Endpoint,
    target: &Target,
    dir: &Path,
    start: Option<&str>,
    opts: &ArchiveOptions,
    stop: CancellationToken,
) -> Result<ArchiveSummary, BinlogError> {
    let flavor = source.flavor;
    let existing = list_manifests(target, dir).await?;
    let (number, position) = match existing.iter().next_back() {
        Some((n, m)) => (n + 1, normalize(flavor, &m.end_position)?),
        None => {
            let s = start.ok_or_else(|| {
                BinlogError::OutOfRange(
                    "the archive is empty and no start position (a base backup's GTID) was given"
                        .into(),
                )
            })?;
            (1, normalize(flavor, s)?)
        }
    };
    let until = opts
        .until
        .as_deref()
        .map(|u| normalize(flavor, u))
        .transpose()?;
    let mut run = Run {
        target,
        dir,
        source: format!("{}:{}", source.host, source.port),
        flavor,
        pos: position.clone(),
        pending: Pending::new(number, position, None),
        stored: 0,
        transactions: 0,
        progress: opts.progress.clone(),
    };
    if let Some(u) = &until
        && run.pos.contains(u)
    {
        return Ok(run.summary());
    }

    let mut conn = connect(
        &source.host,
        source.port,
        &source.login,
        opts.connect_timeout,
    )
    .await?;
    // MariaDB's GTID dump: start after this position, GTID events
    // included (capability 4), refuse a position the source does not hold.
    // MySQL: COM_BINLOG_DUMP_GTID with the executed set.
    let mut prepare = vec![format!(
        "SET @master_heartbeat_period = {}",
        opts.heartbeat.as_nanos()
    )];
    if flavor == MySqlFlavor::MariaDB {
        prepare.extend([
            "SET @mariadb_slave_capability = 4".to_string(),
            format!(
                "SET @slave_connect_state = {}",
                quote_str(&run.pos.position())
            ),
            "SET @slave_gtid_strict_mode = 1".into(),
            "SET @slave_gtid_ignore_duplicates = 0".into(),
        ]);
    }
    for sql in prepare {
        conn.query_drop(sql.as_str())
            .await
            .map_err(|source| BinlogError::Sql {
                context: format!("prepare the binlog dump ({sql})"),
                source,
            })?;
    }
    let mut request = BinlogStreamRequest::new(opts.server_id);
    if flavor == MySqlFlavor::MySQL {
        let text = run.pos.to_string();
        let mut sids = Vec::new();
        for part in text.split(',').filter(|p| !p.trim().is_empty()) {
            let sid: Sid<'static> = part.trim().parse().map_err(|e| {
                BinlogError::Stream(format!("GTID set {part:?} for the dump request: {e}"))
            })?;
            sids.push(sid);
        }
        request = request.with_gtid().with_gtid_set(sids);
    }
    let mut stream = conn
        .get_binlog_stream(request)
        .await
        .map_err(|source| BinlogError::Sql {
            context: format!(
                "request the binlog from {} at {}",
                run.source,
                run.pos.position()
            ),
            source,
        })?;
    tracing::info!(source = %run.source, position = %run.pos.position(), segment = run.pending.number, "binlog archiving started");

    let mut txn: Option<Grouping> = None;
    let result: Result<(), BinlogError> = async {
        let silence = opts.heartbeat * 3;
        let mut heard = Instant::now();
        loop {
            let cut_at = run.pending.since.map(|t| t + opts.max_delay);
            let give_up_at = heard + silence;
            let wait_until = cut_at.map_or(give_up_at, |c| c.min(give_up_at));
            let wait = wait_until.saturating_duration_since(Instant::now());
            let next = tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                r = tokio::time::timeout(wait, stream.next()) => r,
            };
            let ev = match next {
                Err(_) => {
                    if heard.elapsed() >= silence {
                        return Err(BinlogError::Stream(format!(
                            "no event or heartbeat from {} for {silence:?}",
                            run.source
                        )));
                    }
                    run.cut().await?;
                    continue;
                }
                Ok(None) => {
                    return Err(BinlogError::Stream(format!(
                        "{} closed the binlog stream",
                        run.source
                    )));
                }
                Ok(Some(Err(source))) => {
                    return Err(BinlogError::Sql {
                        context: format!("read the binlog of {}", run.source),
                        source,
                    });
                }
                Ok(Some(Ok(ev))) => {
                    heard = Instant::now();
                    ev
                }
            };
            let raw = to_raw(&ev)?;
            let code = raw.type_code();
            match code {
                FORMAT_DESCRIPTION_EVENT => {
                    if txn.is_some() {
                        return Err(BinlogError::Stream(
                            "format description inside a transaction".into(),
                        ));
                    }
                    let same = run
                        .pending
                        .fde
                        .as_ref()
                        .is_some_and(|f| fde_body(f) == fde_body(&raw));
                    if !same {
                        if run.pending.transactions > 0 {
                            run.cut().await?;
                        }
                        run.pending =
                            Pending::new(run.pending.number, run.pending.start.clone(), Some(raw));
                    }
                }
                ROTATE_EVENT
                | HEARTBEAT_EVENT
                | GTID_LIST_EVENT
                | BINLOG_CHECKPOINT_EVENT
                | STOP_EVENT
                | IGNORABLE_EVENT
                | PREVIOUS_GTIDS_EVENT => {
                    if txn.is_some() && code != HEARTBEAT_EVENT {
                        return Err(BinlogError::Stream(format!(
                            "event of type {code} inside a transaction"
                        )));
                    }
                }
                code if starts_transaction(code) => {
                    let fde = run.pending.fde.as_ref().ok_or_else(|| {
                        BinlogError::Stream("transaction before any format description".into())
                    })?;
                    if let Some(g) = &txn {
                        return Err(BinlogError::Stream(format!(
                            "transaction {} has no end before the next GTID",
                            g.gtid
                        )));
                    }
                    let g = Gtid::parse(&raw, fde_checksummed(fde))
                        .map_err(BinlogError::Unsupported)?;
                    if g.xa() {
                        return Err(BinlogError::Unsupported(format!(
                            "XA transaction {g}: archiving XA transactions is not implemented"
                        )));
                    }
                    txn = Some(Grouping::new(g, raw));
                }
                _ => {
                    let checksummed = run.pending.fde.as_ref().is_some_and(fde_checksummed);
                    let Some(g) = txn.as_mut() else {
                        return Err(BinlogError::Stream(format!(
                            "event of type {code} outside a transaction"
                        )));
                    };
                    let step = g.push(raw, checksummed).map_err(BinlogError::Unsupported)?;
                    if let Step::End = step
                        && let Some(g) = txn.take()
                    {
                        let t = g.finish();
                        run.add(t.gtid, t.events, t.commit_timestamp)?;
                        if run.pending.raw.len() >= opts.max_segment_bytes {
                            run.cut().await?;
                        }
                        if let Some(u) = &until
                            && run.pos.contains(u)
                        {
                            return Ok(());
                        }
                    }
                }
            }
        }
    }
    .await;
    // Store what is complete whatever stopped the stream.
    let stored = run.cut().await;
    let _ = stream.close().await;
    result?;
    stored?;
    tracing::info!(source = %run.source, position = %run.pos.position(), segments = run.stored, "binlog archiving stopped");
    Ok(run.summary())
}

/// The FDE without header timestamp/position and checksum: equal for
/// every binlog file of one server version and configuration.
fn fde_body(f: &RawEvent) -> &[u8] {
    f.body(true)
}

/// Check an event's CRC32 and return it as stored bytes.
fn to_raw(ev: &Event) -> Result<RawEvent, BinlogError> {
    check_crc(ev).map_err(BinlogError::Stream)?;
    let mut bytes = Vec::with_capacity(ev.data().len() + 24);
    ev.write(BinlogVersion::Version4, &mut bytes)
        .map_err(|e| BinlogError::Stream(format!("re-encode event: {e}")))?;
    if bytes.len() < 19 {
        return Err(BinlogError::Stream("event shorter than its header".into()));
    }
    Ok(RawEvent { bytes })
}

struct Run<'a> {
    target: &'a Target,
    dir: &'a Path,
    source: String,
    flavor: MySqlFlavor,
    pos: GtidSet,
    pending: Pending,
    stored: u64,
    transactions: u64,
    progress: Option<std::sync::Arc<tokio::sync::watch::Sender<Option<SegmentManifest>>>>,
}

impl Run<'_> {
    fn add(&mut self, g: Gtid, events: Vec<RawEvent>, ts: u32) -> Result<(), BinlogError> {
        advance(&mut self.pos, &g)?;
        let p = &mut self.pending;
        for e in &events {
            p.raw.extend_from_slice(&e.bytes);
        }
        p.events += events.len() as u64;
        if p.first_gtid.is_none() {
            p.first_gtid = Some(g.clone());
            p.first_ts = ts;
            p.since = Some(Instant::now());
        }
        p.last_gtid = Some(g);
        p.last_ts = ts;
        p.transactions += 1;
        self.transactions += 1;
        Ok(())
    }

    /// Store the pending segment (if it holds a transaction) and start the next.
    async fn cut(&mut self) -> Result<(), BinlogError> {
        if self.pending.transactions == 0 {
            self.pending.since = None;
            return Ok(());
        }
        let p = &self.pending;
        let (number, end) = (p.number, self.pos.position());
        let describe = |sha256: String, size: u64| SegmentManifest {
            format_version: SEGMENT_FORMAT,
            flavor: format!("{:?}", self.flavor),
            number,
            object: segment_name(number),
            start_position: p.start.position(),
            end_position: end.clone(),
            first_gtid: p
                .first_gtid
                .as_ref()
                .map(|g| g.to_string())
                .unwrap_or_default(),
            last_gtid: p
                .last_gtid
                .as_ref()
                .map(|g| g.to_string())
                .unwrap_or_default(),
            first_timestamp: i64::from(p.first_ts),
            last_timestamp: i64::from(p.last_ts),
            transactions: p.transactions,
            events: p.events,
            raw_bytes: p.raw.len() as u64,
            size_bytes: size,
            sha256,
            source: self.source.clone(),
            archived_at: chrono::Utc::now().to_rfc3339(),
        };
        let m = put_segment(self.target, self.dir, number, &p.raw, describe).await?;
        tracing::info!(segment = number, transactions = m.transactions, first = %m.first_gtid, last = %m.last_gtid, bytes = m.size_bytes, "binlog segment stored");
        self.stored += 1;
        if let Some(p) = &self.progress {
            p.send_replace(Some(m));
        }
        self.pending = Pending::new(number + 1, self.pos.clone(), self.pending.fde.clone());
        Ok(())
    }

    fn summary(&self) -> ArchiveSummary {
        ArchiveSummary {
            segments: self.stored,
            transactions: self.transactions,
            position: self.pos.position(),
        }
    }
}
