//! The on-disk outbox: every finding is written here, with its sequence number, before it
//! is sent; only what the collector acknowledged is deleted. An agent restart or a
//! collector outage therefore loses nothing that reached the outbox.
//!
//! The outbox is bounded: when a new finding would take it past its byte limit, the
//! oldest findings are dropped (a long outage keeps the most recent picture), and the
//! drop is counted so that a `spool-overflow` finding can say what was lost once the link
//! is back. The node's latest posture snapshot has its own slot: only the newest matters.

use std::{
    fs,
    os::unix::fs::DirBuilderExt as _,
    path::{Path, PathBuf},
    sync::Arc,
};

use nodeward_proto::{model::Finding, v1};
use prost::Message as _;
use redb::{
    Database, ReadableDatabase as _, ReadableTable as _, ReadableTableMetadata as _,
    TableDefinition,
};
use tokio::sync::Notify;

const FINDINGS: TableDefinition<u64, &[u8]> = TableDefinition::new("findings");
const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");
const IDS: TableDefinition<&str, &str> = TableDefinition::new("ids");
const POSTURE: TableDefinition<&str, &[u8]> = TableDefinition::new("posture");
const NEXT_SEQ: &str = "next_seq";
/// Encoded size of the findings stored.
const BYTES: &str = "bytes";
/// Findings dropped to stay within the limit and not yet reported, and the first and last
/// sequence number among them.
const DROPPED: &str = "dropped_unreported";
const DROPPED_FIRST: &str = "dropped_first_seq";
const DROPPED_LAST: &str = "dropped_last_seq";
/// Every finding ever dropped (for the metric).
const DROPPED_TOTAL: &str = "dropped_total";
const NEXT_GENERATION: &str = "next_posture_generation";
const POSTURE_ACKED: &str = "posture_acked_generation";
const LATEST: &str = "latest";
const STREAM_ID: &str = "stream_id";
const FILE_NAME: &str = "outbox.redb";

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("cannot create spool directory {path}")]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open outbox {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: redb::DatabaseError,
    },
    #[error("outbox storage failed")]
    Storage(#[from] redb::Error),
    #[error("the posture snapshot in the outbox is corrupt")]
    CorruptPosture(#[source] prost::DecodeError),
    #[error("outbox entry {seq} is corrupt")]
    Corrupt {
        seq: u64,
        #[source]
        source: prost::DecodeError,
    },
}

type Result<T, E = OutboxError> = std::result::Result<T, E>;

fn storage(e: impl Into<redb::Error>) -> OutboxError {
    OutboxError::Storage(e.into())
}

/// Cheap to clone; clones share the database and the wake-up signal. Calls block on disk
/// I/O, so async code runs them on the blocking pool.
#[derive(Clone)]
pub struct Outbox {
    db: Arc<Database>,
    stream_id: Arc<str>,
    max_bytes: u64,
    appended: Arc<Notify>,
}

/// Findings the bound made the outbox drop and nobody was told about yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dropped {
    pub count: u64,
    pub first_seq: u64,
    pub last_seq: u64,
}

impl Outbox {
    /// Opens (or creates) the outbox in `dir`, which is created with mode 0700, keeping
    /// at most `max_bytes` of encoded findings.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Self> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| OutboxError::Dir {
                path: dir.to_owned(),
                source,
            })?;
        let path = dir.join(FILE_NAME);
        let db = Database::create(&path).map_err(|source| OutboxError::Open { path, source })?;
        let stream_id = Self::init(&db)?;
        Ok(Self {
            db: Arc::new(db),
            stream_id: stream_id.into(),
            max_bytes,
            appended: Arc::new(Notify::new()),
        })
    }

    /// Creates the tables and the stream id on first use; returns the stream id.
    fn init(db: &Database) -> Result<String> {
        let tx = db.begin_write().map_err(storage)?;
        let id = {
            tx.open_table(FINDINGS).map_err(storage)?;
            tx.open_table(COUNTERS).map_err(storage)?;
            tx.open_table(POSTURE).map_err(storage)?;
            let mut ids = tx.open_table(IDS).map_err(storage)?;
            let existing = ids
                .get(STREAM_ID)
                .map_err(storage)?
                .map(|v| v.value().to_owned());
            if let Some(id) = existing {
                id
            } else {
                let id = uuid::Uuid::new_v4().to_string();
                ids.insert(STREAM_ID, id.as_str()).map_err(storage)?;
                id
            }
        };
        tx.commit().map_err(storage)?;
        Ok(id)
    }

    /// Identifies this outbox's sequence-number space.
    pub fn stream_id(&self) -> &str {
        &self.stream_id
    }

    /// Stores a finding under the next sequence number and returns that number. With a
    /// `counter`, also sets that named counter in the same transaction, so a finding and
    /// the bookkeeping it reports on are stored together or not at all. When the outbox
    /// would exceed its limit, the oldest findings are dropped and counted first.
    pub fn append(&self, finding: Finding, counter: Option<(&str, u64)>) -> Result<u64> {
        self.append_with(finding, |counters| {
            if let Some((name, value)) = counter {
                counters.insert(name, value).map_err(storage)?;
            }
            Ok(())
        })
    }

    /// Appends a `spool-overflow` finding made from what was dropped, and forgets the
    /// drop in the same transaction; `None` when nothing was dropped.
    pub fn report_dropped(&self, make: impl FnOnce(Dropped) -> Finding) -> Result<Option<u64>> {
        let Some(dropped) = self.dropped()? else {
            return Ok(None);
        };
        let seq = self.append_with(make(dropped), |counters| {
            for name in [DROPPED, DROPPED_FIRST, DROPPED_LAST] {
                counters.insert(name, 0).map_err(storage)?;
            }
            Ok(())
        })?;
        Ok(Some(seq))
    }

    /// What was dropped and not yet reported.
    pub fn dropped(&self) -> Result<Option<Dropped>> {
        let count = self.counter(DROPPED)?;
        if count == 0 {
            return Ok(None);
        }
        Ok(Some(Dropped {
            count,
            first_seq: self.counter(DROPPED_FIRST)?,
            last_seq: self.counter(DROPPED_LAST)?,
        }))
    }

    /// Every finding ever dropped by the bound.
    pub fn dropped_total(&self) -> Result<u64> {
        self.counter(DROPPED_TOTAL)
    }

    /// Encoded size of the findings stored.
    pub fn bytes(&self) -> Result<u64> {
        self.counter(BYTES)
    }

    fn append_with(
        &self,
        mut finding: Finding,
        bookkeeping: impl FnOnce(&mut redb::Table<&str, u64>) -> Result<()>,
    ) -> Result<u64> {
        let tx = self.db.begin_write().map_err(storage)?;
        let seq = {
            let mut counters = tx.open_table(COUNTERS).map_err(storage)?;
            bookkeeping(&mut counters)?;
            let seq = get(&counters, NEXT_SEQ)?.max(1);
            counters.insert(NEXT_SEQ, seq + 1).map_err(storage)?;
            finding.seq = seq;
            let bytes = v1::Finding::from(finding).encode_to_vec();
            let size = bytes.len() as u64;
            let mut findings = tx.open_table(FINDINGS).map_err(storage)?;
            let mut stored = get(&counters, BYTES)?;
            // Make room by dropping the oldest: the newest findings describe the node as
            // it is now, which is what the SOC needs first after an outage.
            let (mut dropped, mut first, mut last) = (0u64, 0u64, 0u64);
            while stored + size > self.max_bytes {
                let Some((old_seq, old)) = findings.pop_first().map_err(storage)? else {
                    break;
                };
                stored = stored.saturating_sub(old.value().len() as u64);
                let old_seq = old_seq.value();
                if dropped == 0 {
                    first = old_seq;
                }
                last = old_seq;
                dropped += 1;
            }
            if dropped > 0 {
                let unreported = get(&counters, DROPPED)?;
                if unreported == 0 {
                    counters.insert(DROPPED_FIRST, first).map_err(storage)?;
                }
                counters
                    .insert(DROPPED, unreported + dropped)
                    .map_err(storage)?;
                counters.insert(DROPPED_LAST, last).map_err(storage)?;
                let total = get(&counters, DROPPED_TOTAL)?;
                counters
                    .insert(DROPPED_TOTAL, total + dropped)
                    .map_err(storage)?;
            }
            findings.insert(seq, bytes.as_slice()).map_err(storage)?;
            counters.insert(BYTES, stored + size).map_err(storage)?;
            seq
        };
        tx.commit().map_err(storage)?;
        self.appended.notify_one();
        Ok(seq)
    }

    /// Keeps `snapshot` as the latest posture under the next generation, which it returns.
    pub fn put_posture(&self, snapshot: &mut v1::PostureSnapshot) -> Result<u64> {
        let tx = self.db.begin_write().map_err(storage)?;
        let generation = {
            let mut counters = tx.open_table(COUNTERS).map_err(storage)?;
            let generation = get(&counters, NEXT_GENERATION)?.max(1);
            counters
                .insert(NEXT_GENERATION, generation + 1)
                .map_err(storage)?;
            snapshot.generation = generation;
            tx.open_table(POSTURE)
                .map_err(storage)?
                .insert(LATEST, snapshot.encode_to_vec().as_slice())
                .map_err(storage)?;
            generation
        };
        tx.commit().map_err(storage)?;
        self.appended.notify_one();
        Ok(generation)
    }

    /// The latest posture snapshot, unless the collector acknowledged it already.
    pub fn unacked_posture(&self) -> Result<Option<v1::PostureSnapshot>> {
        let tx = self.db.begin_read().map_err(storage)?;
        let acked = {
            let counters = tx.open_table(COUNTERS).map_err(storage)?;
            counters
                .get(POSTURE_ACKED)
                .map_err(storage)?
                .map_or(0, |v| v.value())
        };
        let table = tx.open_table(POSTURE).map_err(storage)?;
        let Some(bytes) = table.get(LATEST).map_err(storage)? else {
            return Ok(None);
        };
        let snapshot =
            v1::PostureSnapshot::decode(bytes.value()).map_err(OutboxError::CorruptPosture)?;
        Ok((snapshot.generation > acked).then_some(snapshot))
    }

    /// Records that the collector stored the posture of `generation`.
    pub fn ack_posture(&self, generation: u64) -> Result<()> {
        let acked = self.counter(POSTURE_ACKED)?;
        self.set_counter(POSTURE_ACKED, acked.max(generation))
    }

    /// A named counter kept with the outbox (0 if never set).
    pub fn counter(&self, name: &str) -> Result<u64> {
        let tx = self.db.begin_read().map_err(storage)?;
        let table = tx.open_table(COUNTERS).map_err(storage)?;
        Ok(table.get(name).map_err(storage)?.map_or(0, |v| v.value()))
    }

    /// Sets a named counter.
    pub fn set_counter(&self, name: &str, value: u64) -> Result<()> {
        let tx = self.db.begin_write().map_err(storage)?;
        tx.open_table(COUNTERS)
            .map_err(storage)?
            .insert(name, value)
            .map_err(storage)?;
        tx.commit().map_err(storage)
    }

    /// Up to `limit` stored findings with a sequence number above `after`, in order.
    pub fn read_after(&self, after: u64, limit: usize) -> Result<Vec<v1::Finding>> {
        let tx = self.db.begin_read().map_err(storage)?;
        let table = tx.open_table(FINDINGS).map_err(storage)?;
        let mut out = Vec::new();
        for entry in table
            .range(after.saturating_add(1)..)
            .map_err(storage)?
            .take(limit)
        {
            let (seq, bytes) = entry.map_err(storage)?;
            let finding =
                v1::Finding::decode(bytes.value()).map_err(|source| OutboxError::Corrupt {
                    seq: seq.value(),
                    source,
                })?;
            out.push(finding);
        }
        Ok(out)
    }

    /// Forgets every finding up to and including `seq`; returns how many.
    pub fn ack(&self, seq: u64) -> Result<usize> {
        let tx = self.db.begin_write().map_err(storage)?;
        let mut removed = 0;
        {
            let mut table = tx.open_table(FINDINGS).map_err(storage)?;
            let mut freed = 0u64;
            table
                .retain_in(..=seq, |_, bytes| {
                    removed += 1;
                    freed += bytes.len() as u64;
                    false
                })
                .map_err(storage)?;
            let mut counters = tx.open_table(COUNTERS).map_err(storage)?;
            let stored = get(&counters, BYTES)?;
            counters
                .insert(BYTES, stored.saturating_sub(freed))
                .map_err(storage)?;
        }
        tx.commit().map_err(storage)?;
        Ok(removed)
    }

    /// Number of findings not yet acknowledged.
    pub fn pending(&self) -> Result<u64> {
        let tx = self.db.begin_read().map_err(storage)?;
        tx.open_table(FINDINGS)
            .map_err(storage)?
            .len()
            .map_err(storage)
    }

    /// Completes after the next `append` (or at once if one happened since the last wait).
    pub async fn appended(&self) {
        self.appended.notified().await;
    }
}

fn get(counters: &redb::Table<&str, u64>, name: &str) -> Result<u64> {
    Ok(counters
        .get(name)
        .map_err(storage)?
        .map_or(0, |v| v.value()))
}

#[cfg(test)]
mod tests;
