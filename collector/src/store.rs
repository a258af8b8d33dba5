//! Findings and nodes in SQLite (WAL, one file). Inserting is idempotent per
//! (node, stream, seq), so an agent's resend after a reconnect is stored once.

use std::path::{Path, PathBuf};

use jiff::Timestamp;
use nodeward_proto::{model, v1};
use prost::Message as _;
use sqlx::{
    Row as _, SqlitePool,
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
    #[error("database query failed")]
    Query(#[from] sqlx::Error),
    #[error("stored finding {id} cannot be decoded")]
    Corrupt {
        id: i64,
        #[source]
        source: prost::DecodeError,
    },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Where a batch of findings came from, as the agent's hello said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub node_name: String,
    pub stream_id: String,
    pub boot_id: String,
    pub agent_version: String,
}

pub struct Store {
    pool: SqlitePool,
}

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
        Ok(Self { pool })
    }

    /// Records that a node said hello.
    pub async fn upsert_node(&self, origin: &Origin, now: Timestamp) -> Result<()> {
        let now = now.to_string();
        sqlx::query(
            "INSERT INTO nodes (name, boot_id, stream_id, agent_version, first_seen, last_seen)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)
             ON CONFLICT (name) DO UPDATE SET boot_id = ?2, stream_id = ?3, agent_version = ?4, last_seen = ?5",
        )
        .bind(&origin.node_name)
        .bind(&origin.boot_id)
        .bind(&origin.stream_id)
        .bind(&origin.agent_version)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Stores a batch in one transaction and returns the findings that were new, as
    /// records in id order (resent ones are skipped).
    pub async fn insert_findings(
        &self,
        origin: &Origin,
        findings: Vec<model::Finding>,
        received: Timestamp,
    ) -> Result<Vec<v1::FindingRecord>> {
        let received_text = received.to_string();
        let mut tx = self.pool.begin().await?;
        let mut records = Vec::new();
        for finding in findings {
            let wire = v1::Finding::from(finding.clone());
            let inserted = sqlx::query(
                "INSERT INTO findings (node_name, stream_id, seq, boot_id, received_time, time, rule_id, severity, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT (node_name, stream_id, seq) DO NOTHING
                 RETURNING id",
            )
            .bind(&origin.node_name)
            .bind(&origin.stream_id)
            .bind(i64::try_from(finding.seq).unwrap_or(i64::MAX))
            .bind(&origin.boot_id)
            .bind(&received_text)
            .bind(finding.time.to_string())
            .bind(&finding.rule_id)
            .bind(severity_name(finding.severity))
            .bind(wire.encode_to_vec())
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(row) = inserted {
                records.push(v1::FindingRecord {
                    id: id_from(row.try_get(0)?),
                    node_name: origin.node_name.clone(),
                    boot_id: origin.boot_id.clone(),
                    received_time: Some(wire_time(received)),
                    finding: Some(wire),
                });
            }
        }
        sqlx::query("UPDATE nodes SET last_seen = ?1 WHERE name = ?2")
            .bind(&received_text)
            .bind(&origin.node_name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(records)
    }

    /// Up to `limit` records with an id above `after`, in id order.
    pub async fn findings_after(&self, after: u64, limit: u32) -> Result<Vec<v1::FindingRecord>> {
        let rows = sqlx::query(
            "SELECT id, node_name, boot_id, received_time, body FROM findings WHERE id > ?1 ORDER BY id LIMIT ?2",
        )
        .bind(i64::try_from(after).unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|row| {
                let id: i64 = row.try_get(0)?;
                let received: String = row.try_get(3)?;
                let body: Vec<u8> = row.try_get(4)?;
                let finding = v1::Finding::decode(body.as_slice())
                    .map_err(|source| StoreError::Corrupt { id, source })?;
                Ok(v1::FindingRecord {
                    id: id_from(id),
                    node_name: row.try_get(1)?,
                    boot_id: row.try_get(2)?,
                    received_time: received.parse().ok().map(wire_time),
                    finding: Some(finding),
                })
            })
            .collect()
    }

    /// The largest finding id stored so far (0 when there is none).
    pub async fn last_id(&self) -> Result<u64> {
        let id: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM findings")
            .fetch_one(&self.pool)
            .await?;
        Ok(id.map_or(0, id_from))
    }
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
mod tests;
