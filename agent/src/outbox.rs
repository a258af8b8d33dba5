//! The on-disk outbox: every finding is written here, with its sequence number, before it
//! is sent; only what the collector acknowledged is deleted. An agent restart or a
//! collector outage therefore loses nothing that reached the outbox.

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
const NEXT_SEQ: &str = "next_seq";
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
    appended: Arc<Notify>,
}

impl Outbox {
    /// Opens (or creates) the outbox in `dir`, which is created with mode 0700.
    pub fn open(dir: &Path) -> Result<Self> {
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
            appended: Arc::new(Notify::new()),
        })
    }

    /// Creates the tables and the stream id on first use; returns the stream id.
    fn init(db: &Database) -> Result<String> {
        let tx = db.begin_write().map_err(storage)?;
        let id = {
            tx.open_table(FINDINGS).map_err(storage)?;
            tx.open_table(COUNTERS).map_err(storage)?;
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
    /// the bookkeeping it reports on are stored together or not at all.
    pub fn append(&self, mut finding: Finding, counter: Option<(&str, u64)>) -> Result<u64> {
        let tx = self.db.begin_write().map_err(storage)?;
        let seq = {
            let mut counters = tx.open_table(COUNTERS).map_err(storage)?;
            if let Some((name, value)) = counter {
                counters.insert(name, value).map_err(storage)?;
            }
            let seq = counters
                .get(NEXT_SEQ)
                .map_err(storage)?
                .map_or(1, |v| v.value());
            counters.insert(NEXT_SEQ, seq + 1).map_err(storage)?;
            finding.seq = seq;
            let bytes = v1::Finding::from(finding).encode_to_vec();
            tx.open_table(FINDINGS)
                .map_err(storage)?
                .insert(seq, bytes.as_slice())
                .map_err(storage)?;
            seq
        };
        tx.commit().map_err(storage)?;
        self.appended.notify_one();
        Ok(seq)
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
            table
                .retain_in(..=seq, |_, _| {
                    removed += 1;
                    false
                })
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

#[cfg(test)]
mod tests;
