//! The fleet: every node that said hello, when it was last heard from, whether it went
//! silent, and its latest posture snapshot. The SQL is in `sqlite` and `postgres`.

use std::collections::BTreeMap;

use super::{Origin, Pool, Result, Store, StoreError, postgres, sqlite};
use jiff::Timestamp;
use nodeward_proto::{model, v1};

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

impl Store {
    /// Records what a node's hello said. `last_seen` is left to [`Store::seen`], which
    /// also notices a silent node coming back.
    pub async fn record_hello(&self, origin: &Origin, now: Timestamp) -> Result<()> {
        match &self.pool {
            Pool::Sqlite(pool) => sqlite::record_hello(pool, origin, now).await,
            Pool::Postgres(pool) => postgres::record_hello(pool, origin, now).await,
        }
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
        match &self.pool {
            Pool::Sqlite(pool) => sqlite::seen(pool, node, now, back).await,
            Pool::Postgres(pool) => postgres::seen(pool, node, now, back).await,
        }
    }

    /// Marks silent every node last heard from before `cutoff` and stores
    /// `silent(node, last_seen)` for each, in one transaction; returns the new records.
    pub async fn mark_silent(
        &self,
        cutoff: Timestamp,
        now: Timestamp,
        silent: impl Fn(&str, Timestamp) -> model::Finding + Send,
    ) -> Result<Vec<v1::FindingRecord>> {
        match &self.pool {
            Pool::Sqlite(pool) => sqlite::mark_silent(pool, cutoff, now, silent).await,
            Pool::Postgres(pool) => postgres::mark_silent(pool, cutoff, now, silent).await,
        }
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
        let generation = i64::try_from(snapshot.generation).unwrap_or(i64::MAX);
        match &self.pool {
            Pool::Sqlite(pool) => {
                sqlite::store_posture(pool, node, stream_id, generation, json, now).await
            }
            Pool::Postgres(pool) => {
                postgres::store_posture(pool, node, stream_id, generation, json, now).await
            }
        }
    }

    /// Every node, by name.
    pub async fn list_nodes(&self) -> Result<Vec<NodeRecord>> {
        match &self.pool {
            Pool::Sqlite(pool) => sqlite::list_nodes(pool).await,
            Pool::Postgres(pool) => postgres::list_nodes(pool).await,
        }
    }

    /// One node, or `None` when it never said hello.
    pub async fn node(&self, name: &str) -> Result<Option<NodeRecord>> {
        match &self.pool {
            Pool::Sqlite(pool) => sqlite::node(pool, name).await,
            Pool::Postgres(pool) => postgres::node(pool, name).await,
        }
    }

    /// Per check, how many nodes pass, fail or neither, over each node's latest snapshot.
    pub async fn fleet_posture(&self) -> Result<FleetSummary> {
        Ok(summarise(&self.list_nodes().await?))
    }

    /// How many known nodes report, and how many are silent.
    pub async fn node_counts(&self) -> Result<(u64, u64)> {
        let (reporting, silent) = match &self.pool {
            Pool::Sqlite(pool) => sqlite::node_counts(pool).await?,
            Pool::Postgres(pool) => postgres::node_counts(pool).await?,
        };
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

/// `node` with its posture snapshot, read back from `json` (as stored) when the node has
/// one.
pub(super) fn node_record(
    mut node: NodeRecord,
    json: Option<String>,
    received: Option<Timestamp>,
) -> Result<NodeRecord> {
    if let (Some(json), Some(received)) = (json, received) {
        node.posture = Some(StoredPosture {
            snapshot: serde_json::from_str(&json).map_err(|source| StoreError::CorruptPosture {
                node: node.name.clone(),
                source,
            })?,
            received,
        });
    }
    Ok(node)
}

pub(super) fn parse_time(node: &str, value: String) -> Result<Timestamp> {
    value.parse().map_err(|source| StoreError::CorruptTime {
        node: node.to_owned(),
        value,
        source,
    })
}
