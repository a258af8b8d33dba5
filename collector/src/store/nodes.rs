//! The fleet: every node that said hello, when it was last heard from, whether it went
//! silent, and its latest posture snapshot.

use std::collections::BTreeMap;

use jiff::Timestamp;
use nodeward_proto::{model, v1};
use sqlx::{Row as _, SqliteConnection, sqlite::SqliteRow};

use super::{
    Origin, Result, Store, StoreError,
    findings::{Key, insert},
};

/// The stream and boot id of the findings the collector makes itself.
pub const COLLECTOR_STREAM: &str = "collector";

/// A node as the store knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeRecord {
    pub name: String,
    pub cluster: String,
    pub agent_version: String,
    pub boot_id: String,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    pub silent: bool,
    pub posture: Option<StoredPosture>,
}

/// A node's latest posture snapshot and when the collector received it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredPosture {
    pub snapshot: model::PostureSnapshot,
    pub received: Timestamp,
}

/// What happened to a posture snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostureOutcome {
    /// It is now the node's latest.
    Stored,
    /// A newer generation from the same agent outbox is already stored.
    Stale,
}

/// One check across the fleet, over each node's latest snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckTally {
    pub id: String,
    pub title: String,
    pub benchmarks: Vec<String>,
    pub passing: u32,
    pub failing: u32,
    /// `warn` or `error`.
    pub other: u32,
    /// Sorted by name.
    pub failing_nodes: Vec<String>,
}

/// Per check, how the fleet fares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FleetSummary {
    /// Nodes with a posture snapshot.
    pub nodes: u32,
    /// Sorted by check id.
    pub checks: Vec<CheckTally>,
}

/// The columns [`node_from_row`] reads (a macro, so queries stay `&'static str`).
macro_rules! node_columns {
    () => {
        "name, cluster, agent_version, boot_id, first_seen, last_seen, silent, posture, posture_received"
    };
}

impl Store {
    /// Records what a node's hello said. `last_seen` is left to [`Store::seen`], which
    /// also notices a silent node coming back.
    pub async fn record_hello(&self, origin: &Origin, now: Timestamp) -> Result<()> {
        sqlx::query(
            "INSERT INTO nodes (name, cluster, boot_id, stream_id, agent_version, first_seen, last_seen)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)
             ON CONFLICT (name) DO UPDATE SET cluster = ?2, boot_id = ?3, stream_id = ?4, agent_version = ?5",
        )
        .bind(&origin.node_name)
        .bind(&origin.cluster)
        .bind(&origin.boot_id)
        .bind(&origin.stream_id)
        .bind(&origin.agent_version)
        .bind(now.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records that `node` was heard from at `now`. When it had been marked silent, the
    /// mark is cleared and `back(last_seen)` is stored in the same transaction, so a
    /// return is reported exactly once; the new record is returned.
    pub async fn seen(
        &self,
        node: &str,
        now: Timestamp,
        back: impl FnOnce(Timestamp) -> model::Finding + Send,
    ) -> Result<Option<v1::FindingRecord>> {
        let mut tx = self.pool.begin().await?;
        // Writing first takes the write lock at once; reading first could leave this
        // transaction unable to upgrade when another writer got in between.
        let was_silent = sqlx::query("UPDATE nodes SET silent = 0 WHERE name = ?1 AND silent = 1")
            .bind(node)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1;
        let mut record = None;
        if was_silent {
            let last_seen: String =
                sqlx::query_scalar("SELECT last_seen FROM nodes WHERE name = ?1")
                    .bind(node)
                    .fetch_one(&mut *tx)
                    .await?;
            let finding = back(parse_time(node, last_seen)?);
            record = insert_collector_finding(&mut tx, node, finding, now).await?;
        }
        sqlx::query("UPDATE nodes SET last_seen = ?1 WHERE name = ?2")
            .bind(now.to_string())
            .bind(node)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(record)
    }

    /// Marks silent every node last heard from before `cutoff` and stores
    /// `silent(node, last_seen)` for each, in one transaction; returns the new records.
    pub async fn mark_silent(
        &self,
        cutoff: Timestamp,
        now: Timestamp,
        silent: impl Fn(&str, Timestamp) -> model::Finding + Send,
    ) -> Result<Vec<v1::FindingRecord>> {
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query(
            "UPDATE nodes SET silent = 1
             WHERE silent = 0 AND julianday(last_seen) < julianday(?1)
             RETURNING name, last_seen",
        )
        .bind(cutoff.to_string())
        .fetch_all(&mut *tx)
        .await?;
        let mut records = Vec::new();
        for row in rows {
            let node: String = row.try_get(0)?;
            let last_seen = parse_time(&node, row.try_get(1)?)?;
            let finding = silent(&node, last_seen);
            records.extend(insert_collector_finding(&mut tx, &node, finding, now).await?);
        }
        tx.commit().await?;
        Ok(records)
    }

    /// Keeps `snapshot` as the node's latest posture, unless a newer generation from the
    /// same agent outbox (`stream_id`) is stored. Another outbox's snapshot always wins:
    /// its generations start anew.
    pub async fn store_posture(
        &self,
        node: &str,
        stream_id: &str,
        snapshot: &model::PostureSnapshot,
        now: Timestamp,
    ) -> Result<PostureOutcome> {
        let json =
            serde_json::to_string(snapshot).map_err(|source| StoreError::CorruptPosture {
                node: node.to_owned(),
                source,
            })?;
        let updated = sqlx::query(
            "UPDATE nodes SET posture = ?1, posture_generation = ?2, posture_stream_id = ?3, posture_received = ?4
             WHERE name = ?5
               AND NOT (posture_stream_id IS ?3 AND posture_generation > ?2)",
        )
        .bind(json)
        .bind(i64::try_from(snapshot.generation).unwrap_or(i64::MAX))
        .bind(stream_id)
        .bind(now.to_string())
        .bind(node)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(if updated == 1 {
            PostureOutcome::Stored
        } else {
            PostureOutcome::Stale
        })
    }

    /// Every node, by name.
    pub async fn list_nodes(&self) -> Result<Vec<NodeRecord>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            node_columns!(),
            " FROM nodes ORDER BY name"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(node_from_row).collect()
    }

    /// One node, or `None` when it never said hello.
    pub async fn node(&self, name: &str) -> Result<Option<NodeRecord>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            node_columns!(),
            " FROM nodes WHERE name = ?1"
        ))
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(node_from_row).transpose()
    }

    /// Per check, how many nodes pass, fail or neither, over each node's latest snapshot.
    pub async fn fleet_posture(&self) -> Result<FleetSummary> {
        Ok(summarise(&self.list_nodes().await?))
    }

    /// How many known nodes report, and how many are silent.
    pub async fn node_counts(&self) -> Result<(u64, u64)> {
        let (reporting, silent): (i64, i64) = sqlx::query_as(
            "SELECT COUNT(*) - COALESCE(SUM(silent), 0), COALESCE(SUM(silent), 0) FROM nodes",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok((reporting.unsigned_abs(), silent.unsigned_abs()))
    }
}

/// The fleet summary of `nodes`.
pub fn summarise(nodes: &[NodeRecord]) -> FleetSummary {
    let mut checks: BTreeMap<&str, CheckTally> = BTreeMap::new();
    let mut with_posture = 0;
    for node in nodes {
        let Some(posture) = &node.posture else {
            continue;
        };
        with_posture += 1;
        for check in &posture.snapshot.checks {
            let tally = checks.entry(&check.id).or_insert_with(|| CheckTally {
                id: check.id.clone(),
                title: check.title.clone(),
                benchmarks: check.benchmarks.clone(),
                ..CheckTally::default()
            });
            match check.status {
                model::CheckStatus::Pass => tally.passing += 1,
                model::CheckStatus::Fail => {
                    tally.failing += 1;
                    tally.failing_nodes.push(node.name.clone());
                }
                model::CheckStatus::Warn | model::CheckStatus::Error => tally.other += 1,
            }
        }
    }
    FleetSummary {
        nodes: with_posture,
        // Nodes come sorted by name, so failing_nodes are too.
        checks: checks.into_values().collect(),
    }
}

/// Stores a finding the collector made about `node` under the next collector sequence
/// number.
async fn insert_collector_finding(
    conn: &mut SqliteConnection,
    node: &str,
    mut finding: model::Finding,
    now: Timestamp,
) -> Result<Option<v1::FindingRecord>> {
    let seq: i64 = sqlx::query_scalar(
        "INSERT INTO counters (name, value) VALUES ('collector_seq', 1)
         ON CONFLICT (name) DO UPDATE SET value = value + 1
         RETURNING value",
    )
    .fetch_one(&mut *conn)
    .await?;
    finding.seq = seq.unsigned_abs();
    let key = Key {
        node_name: node,
        stream_id: COLLECTOR_STREAM,
        boot_id: COLLECTOR_STREAM,
    };
    insert(conn, &key, finding, now).await
}

fn node_from_row(row: &SqliteRow) -> Result<NodeRecord> {
    let name: String = row.try_get("name")?;
    let posture: Option<String> = row.try_get("posture")?;
    let posture = match (
        posture,
        row.try_get::<Option<String>, _>("posture_received")?,
    ) {
        (Some(json), Some(received)) => Some(StoredPosture {
            snapshot: serde_json::from_str(&json).map_err(|source| StoreError::CorruptPosture {
                node: name.clone(),
                source,
            })?,
            received: parse_time(&name, received)?,
        }),
        _ => None,
    };
    Ok(NodeRecord {
        cluster: row.try_get("cluster")?,
        agent_version: row.try_get("agent_version")?,
        boot_id: row.try_get("boot_id")?,
        first_seen: parse_time(&name, row.try_get("first_seen")?)?,
        last_seen: parse_time(&name, row.try_get("last_seen")?)?,
        silent: row.try_get("silent")?,
        posture,
        name,
    })
}

fn parse_time(node: &str, value: String) -> Result<Timestamp> {
    value.parse().map_err(|source| StoreError::CorruptTime {
        node: node.to_owned(),
        value,
        source,
    })
}
