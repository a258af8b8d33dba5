//! Findings and nodes in SQLite (WAL, one file) or PostgreSQL (shared by several
//! collector replicas). Inserting is idempotent per (node, stream, seq), so an agent's
//! resend after a reconnect is stored once.
//!
//! [`Store`]'s methods hold what both backends share (paging, filtering, the fleet
//! summary); the SQL of each dialect lives in its own module, `sqlite` and `postgres`,
//! behind the same function names, with its own migrations.

mod findings;
mod nodes;
mod postgres;
mod sqlite;

use std::path::{Path, PathBuf};

use jiff::Timestamp;
use nodeward_proto::{model, v1};
use prost::Message as _;
use sqlx::{
    PgPool, SqlitePool,
    postgres::{PgConnectOptions, PgPoolOptions},
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the directory of {path}")]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open SQLite database {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: sqlx::Error,
    },
    #[error("migrating SQLite database {path}")]
    Migrate {
        path: PathBuf,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    #[error("cannot connect to PostgreSQL at {target}")]
    OpenPostgres {
        /// Host, port and database, without credentials.
        target: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("migrating PostgreSQL database {target}")]
    MigratePostgres {
        target: String,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    #[error("database query failed")]
    Query(#[from] sqlx::Error),
    #[error("stored finding {id} cannot be decoded")]
    Corrupt {
        id: i64,
        #[source]
        source: prost::DecodeError,
    },
    #[error("the stored posture of node {node} cannot be read")]
    CorruptPosture {
        node: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("stored time {value:?} of node {node} cannot be read")]
    CorruptTime {
        node: String,
        value: String,
        #[source]
        source: jiff::Error,
    },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

pub use self::{
    findings::{Batch, matches},
    nodes::{FleetSummary, NodeRecord, PostureOutcome},
    postgres::FeedListener,
};

/// Where a batch of findings came from, as the agent's hello said.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    pub node_name: String,
    pub stream_id: String,
    pub boot_id: String,
    pub agent_version: String,
    /// The cluster the agent says its node is in; may be empty.
    pub cluster: String,
}

pub struct Store {
    pool: Pool,
}

/// The database behind a [`Store`].
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Connections to PostgreSQL per collector. Ingestion is one writer per collector (see
/// `feed::writer`), so more would only serve concurrent readers (SOC queries, metrics,
/// the feed's listener).
const POSTGRES_CONNECTIONS: u32 = 8;

impl Store {
    /// Opens (creating if needed) the database file and brings its schema up to date.
    pub async fn open_sqlite(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
                path: path.to_owned(),
                source,
            })?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // Agents delete what the collector acknowledged, so an acknowledged write
            // must survive power loss, not just a crash.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(std::time::Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Open {
                path: path.to_owned(),
                source,
            })?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&pool)
            .await
            .map_err(|source| StoreError::Migrate {
                path: path.to_owned(),
                source,
            })?;
        Ok(Self {
            pool: Pool::Sqlite(pool),
        })
    }

    /// Connects to PostgreSQL (`postgres://user:password@host:port/database`) and brings
    /// its schema up to date. Several collectors may share one database: migrations take
    /// an advisory lock, and every write is keyed so that replicas cannot duplicate it.
    ///
    /// `password`, when given, overrides the URL's (and `PGPASSWORD`, which sqlx reads
    /// when the URL has none).
    pub async fn open_postgres(url: &str, password: Option<&str>) -> Result<Self> {
        let mut options: PgConnectOptions =
            url.parse().map_err(|source| StoreError::OpenPostgres {
                target: "(unparsable URL)".into(),
                source,
            })?;
        if let Some(password) = password {
            options = options.password(password);
        }
        let target = format!(
            "{}:{}/{}",
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or_default()
        );
        let pool = PgPoolOptions::new()
            .max_connections(POSTGRES_CONNECTIONS)
            .connect_with(options)
            .await
            .map_err(|source| StoreError::OpenPostgres {
                target: target.clone(),
                source,
            })?;
        sqlx::migrate!("./migrations/postgres")
            .run(&pool)
            .await
            .map_err(|source| StoreError::MigratePostgres { target, source })?;
        Ok(Self {
            pool: Pool::Postgres(pool),
        })
    }

    /// Whether other collectors may write to this store too (PostgreSQL): then the live
    /// feed must come from the store, not from what this collector stored.
    pub fn is_shared(&self) -> bool {
        matches!(self.pool, Pool::Postgres(_))
    }

    /// Notifications of findings stored by any collector sharing the store; `None` for
    /// SQLite, which only this collector writes.
    pub async fn listen_findings(&self) -> Result<Option<FeedListener>> {
        match &self.pool {
            Pool::Sqlite(_) => Ok(None),
            Pool::Postgres(pool) => postgres::listen(pool).await.map(Some),
        }
    }
}

/// A stored finding as a record; `body` is the encoded `nodeward.v1.Finding`.
fn record(
    id: i64,
    node_name: String,
    boot_id: String,
    received: Option<Timestamp>,
    body: &[u8],
) -> Result<v1::FindingRecord> {
    let finding = v1::Finding::decode(body).map_err(|source| StoreError::Corrupt { id, source })?;
    Ok(v1::FindingRecord {
        id: id_from(id),
        node_name,
        boot_id,
        received_time: received.map(wire_time),
        finding: Some(finding),
    })
}

fn id_from(id: i64) -> u64 {
    u64::try_from(id).unwrap_or(0)
}

fn wire_time(ts: Timestamp) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ts.as_second(),
        nanos: ts.subsec_nanosecond(),
    }
}

fn severity_name(severity: model::Severity) -> &'static str {
    match severity {
        model::Severity::Info => "info",
        model::Severity::Low => "low",
        model::Severity::Medium => "medium",
        model::Severity::High => "high",
        model::Severity::Critical => "critical",
    }
}

#[cfg(test)]
pub(crate) mod tests;
