//! The SQLite dialect of the store's queries (migrations in `migrations/sqlite`).
//!
//! Timestamps are stored as RFC 3339 text (jiff's `Display`); its fraction has a variable
//! number of digits, so queries compare them through `julianday()`, never as strings.

use jiff::Timestamp;
use nodeward_proto::{model, v1};
use sqlx::{QueryBuilder, Row as _, Sqlite, SqliteConnection, SqlitePool, sqlite::SqliteRow};

use super::{
    Origin, Result,
    findings::{DELETE_BATCH, Key, Row, SqlFilter},
    nodes::{COLLECTOR_STREAM, NodeRecord, PostureOutcome, node_record, parse_time},
    record,
};

pub(super) async fn insert_batches(
    pool: &SqlitePool,
    batches: Vec<(Key<'_>, Vec<Row>)>,
    received: Timestamp,
) -> Result<Vec<Vec<v1::FindingRecord>>> {
    let mut tx = pool.begin().await?;
    let mut stored = Vec::with_capacity(batches.len());
    for (key, rows) in batches {
        let mut records = Vec::new();
        for row in rows {
            if let Some(record) = insert(&mut tx, &key, row, received).await? {
                records.push(record);
            }
        }
        stored.push(records);
    }
    tx.commit().await?;
    Ok(stored)
}

/// Inserts one finding unless its key is already stored; returns the new record.
async fn insert(
    conn: &mut SqliteConnection,
    key: &Key<'_>,
    row: Row,
    received: Timestamp,
) -> Result<Option<v1::FindingRecord>> {
    use prost::Message as _;
    let inserted = sqlx::query(
        "INSERT INTO findings (node_name, stream_id, seq, boot_id, received_time, time, rule_id, severity, body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT (node_name, stream_id, seq) DO NOTHING
         RETURNING id",
    )
    .bind(key.node_name)
    .bind(key.stream_id)
    .bind(row.seq)
    .bind(key.boot_id)
    .bind(received.to_string())
    .bind(row.time.to_string())
    .bind(&row.rule_id)
    .bind(row.severity)
    .bind(row.wire.encode_to_vec())
    .fetch_optional(&mut *conn)
    .await?;
    let Some(inserted) = inserted else {
        return Ok(None);
    };
    Ok(Some(row.into_record(inserted.try_get(0)?, key, received)))
}

pub(super) async fn select_findings(
    pool: &SqlitePool,
    filter: &SqlFilter,
    after: i64,
    limit: i64,
) -> Result<Vec<v1::FindingRecord>> {
    let mut query = QueryBuilder::<Sqlite>::new(
        "SELECT id, node_name, boot_id, received_time, body FROM findings WHERE id > ",
    );
    query.push_bind(after);
    for (column, values) in &filter.columns {
        query.push(format_args!(" AND {column} IN ("));
        let mut list = query.separated(", ");
        for value in values {
            list.push_bind(value.clone());
        }
        list.push_unseparated(")");
    }
    query.push(" ORDER BY id LIMIT ").push_bind(limit);
    let rows = query.build().fetch_all(pool).await?;
    rows.iter().map(record_from_row).collect()
}

fn record_from_row(row: &SqliteRow) -> Result<v1::FindingRecord> {
    let received: String = row.try_get(3)?;
    let body: Vec<u8> = row.try_get(4)?;
    record(
        row.try_get(0)?,
        row.try_get(1)?,
        row.try_get(2)?,
        received.parse().ok(),
        &body,
    )
}

pub(super) async fn last_id(pool: &SqlitePool) -> Result<Option<i64>> {
    Ok(sqlx::query_scalar("SELECT MAX(id) FROM findings")
        .fetch_one(pool)
        .await?)
}

/// Deletes one batch of findings received before `cutoff`.
pub(super) async fn delete_findings_before(pool: &SqlitePool, cutoff: Timestamp) -> Result<u64> {
    Ok(sqlx::query(
        "DELETE FROM findings WHERE id IN (
             SELECT id FROM findings
             WHERE julianday(received_time) < julianday(?1)
             ORDER BY id LIMIT ?2)",
    )
    .bind(cutoff.to_string())
    .bind(DELETE_BATCH)
    .execute(pool)
    .await?
    .rows_affected())
}

pub(super) async fn record_hello(pool: &SqlitePool, origin: &Origin, now: Timestamp) -> Result<()> {
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
    .execute(pool)
    .await?;
    Ok(())
}

pub(super) async fn seen(
    pool: &SqlitePool,
    node: &str,
    now: Timestamp,
    back: impl FnOnce(Timestamp) -> model::Finding + Send,
) -> Result<Option<v1::FindingRecord>> {
    let mut tx = pool.begin().await?;
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
        let last_seen: String = sqlx::query_scalar("SELECT last_seen FROM nodes WHERE name = ?1")
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

pub(super) async fn mark_silent(
    pool: &SqlitePool,
    cutoff: Timestamp,
    now: Timestamp,
    silent: impl Fn(&str, Timestamp) -> model::Finding + Send,
) -> Result<Vec<v1::FindingRecord>> {
    let mut tx = pool.begin().await?;
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

pub(super) async fn store_posture(
    pool: &SqlitePool,
    node: &str,
    stream_id: &str,
    generation: i64,
    json: String,
    now: Timestamp,
) -> Result<PostureOutcome> {
    let updated = sqlx::query(
        "UPDATE nodes SET posture = ?1, posture_generation = ?2, posture_stream_id = ?3, posture_received = ?4
         WHERE name = ?5
           AND NOT (posture_stream_id IS ?3 AND posture_generation > ?2)",
    )
    .bind(json)
    .bind(generation)
    .bind(stream_id)
    .bind(now.to_string())
    .bind(node)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(if updated == 1 {
        PostureOutcome::Stored
    } else {
        PostureOutcome::Stale
    })
}

/// The columns [`node_from_row`] reads (a macro, so queries stay `&'static str`).
macro_rules! node_columns {
    () => {
        "name, cluster, agent_version, boot_id, first_seen, last_seen, silent, posture, posture_received"
    };
}

pub(super) async fn list_nodes(pool: &SqlitePool) -> Result<Vec<NodeRecord>> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        node_columns!(),
        " FROM nodes ORDER BY name"
    ))
    .fetch_all(pool)
    .await?;
    rows.iter().map(node_from_row).collect()
}

pub(super) async fn node(pool: &SqlitePool, name: &str) -> Result<Option<NodeRecord>> {
    let row = sqlx::query(concat!(
        "SELECT ",
        node_columns!(),
        " FROM nodes WHERE name = ?1"
    ))
    .bind(name)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(node_from_row).transpose()
}

pub(super) async fn node_counts(pool: &SqlitePool) -> Result<(i64, i64)> {
    Ok(sqlx::query_as(
        "SELECT COUNT(*) - COALESCE(SUM(silent), 0), COALESCE(SUM(silent), 0) FROM nodes",
    )
    .fetch_one(pool)
    .await?)
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
    insert(conn, &key, Row::new(finding), now).await
}

fn node_from_row(row: &SqliteRow) -> Result<NodeRecord> {
    let name: String = row.try_get("name")?;
    let posture_received = row
        .try_get::<Option<String>, _>("posture_received")?
        .map(|received| parse_time(&name, received))
        .transpose()?;
    let times = (
        parse_time(&name, row.try_get("first_seen")?)?,
        parse_time(&name, row.try_get("last_seen")?)?,
    );
    node_record(
        NodeRecord {
            cluster: row.try_get("cluster")?,
            agent_version: row.try_get("agent_version")?,
            boot_id: row.try_get("boot_id")?,
            first_seen: times.0,
            last_seen: times.1,
            silent: row.try_get("silent")?,
            posture: None,
            name,
        },
        row.try_get("posture")?,
        posture_received,
    )
}
