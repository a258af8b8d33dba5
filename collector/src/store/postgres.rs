//! The PostgreSQL dialect of the store's queries (migrations in `migrations/postgres`).
//!
//! Times are `TIMESTAMPTZ`: written as RFC 3339 text cast with `::timestamptz` (sqlx has
//! no jiff support) and read back as microseconds since the epoch through [`micros!`],
//! which is exact from PostgreSQL 14 on (`EXTRACT` returns numeric). PostgreSQL keeps
//! microseconds, so a time read back is the one written rounded to the microsecond.
//!
//! A group of finding batches is one `INSERT … SELECT FROM UNNEST(…)`: one round trip to
//! the server per group instead of one per finding. Finding ids, as SOC clients see them,
//! are `feed_position`s, handed out in commit order (see [`insert`]); every insert
//! notifies [`FEED_CHANNEL`] so that the other replicas' feeds pick the rows up.

use std::collections::HashMap;

use jiff::Timestamp;
use nodeward_proto::{model, v1};
use prost::Message as _;
use sqlx::{
    PgConnection, PgPool, Postgres, QueryBuilder, Row as _,
    postgres::{PgListener, PgRow},
};

use super::{
    Origin, Result, StoreError,
    findings::{DELETE_BATCH, Key, Row, SqlFilter},
    nodes::{COLLECTOR_STREAM, NodeRecord, PostureOutcome, node_record},
    record,
};

/// `column` as microseconds since the Unix epoch (BIGINT).
macro_rules! micros {
    ($column:literal) => {
        concat!("(EXTRACT(EPOCH FROM ", $column, ") * 1000000)::BIGINT")
    };
}

/// The channel a committed insert notifies, so every replica's feed reads the new rows.
pub(super) const FEED_CHANNEL: &str = "nodeward_findings";

/// Notifications on [`FEED_CHANNEL`]: another replica (or this one) stored findings.
pub struct FeedListener(PgListener);

impl FeedListener {
    /// Waits for the next notification. After a lost connection it returns at once (the
    /// listener reconnects on the next call): notifications sent meanwhile are lost, so
    /// the caller should read the store either way.
    pub async fn next(&mut self) -> Result<()> {
        self.0.try_recv().await?;
        Ok(())
    }
}

pub(super) async fn listen(pool: &PgPool) -> Result<FeedListener> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(FEED_CHANNEL).await?;
    Ok(FeedListener(listener))
}

pub(super) async fn insert_batches(
    pool: &PgPool,
    batches: Vec<(Key<'_>, Vec<Row>)>,
    received: Timestamp,
) -> Result<Vec<Vec<v1::FindingRecord>>> {
    let mut tx = pool.begin().await?;
    let stored = insert(&mut tx, batches, received).await?;
    if stored.iter().any(|records| !records.is_empty()) {
        notify(&mut tx).await?;
    }
    tx.commit().await?;
    Ok(stored)
}

/// Tells every listening replica, once this transaction commits, that findings were
/// stored (PostgreSQL delivers a transaction's notifications only when it commits, and
/// folds identical ones into one).
async fn notify(conn: &mut PgConnection) -> Result<()> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(FEED_CHANNEL)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Inserts the findings whose key is not stored yet, in one statement; returns, per
/// batch, their records in feed order.
///
/// Feed positions come from `feed_clock`, bumped by the size of the whole group in the
/// same statement. That UPDATE row-locks the clock until this transaction ends, so a
/// concurrent inserter (another replica, or `seen`/`mark_silent`) waits, and only then
/// reads the bumped value: positions are handed out in commit order. PostgreSQL makes a
/// transaction visible before it releases its locks, so once a reader sees position P,
/// every lower position that will ever exist is visible too, and a cursor never skips
/// a finding that commits late. (Resent findings leave gaps in the numbering; gaps are
/// harmless, late arrivals below a cursor are what must not happen.) The price is that
/// inserting transactions commit one at a time across replicas, which group commit
/// (`feed::writer`) amortises. The alternative, reading only below the oldest running
/// transaction (`pg_snapshot_xmin`), would need a two-part cursor the SOC API cannot carry.
pub(super) async fn insert(
    conn: &mut PgConnection,
    batches: Vec<(Key<'_>, Vec<Row>)>,
    received: Timestamp,
) -> Result<Vec<Vec<v1::FindingRecord>>> {
    let total: usize = batches.iter().map(|(_, rows)| rows.len()).sum();
    let mut columns = Columns::with_capacity(total);
    for (key, rows) in &batches {
        for row in rows {
            columns.push(key, row);
        }
    }
    // ORDER BY ord: a key repeated within the group is stored from its first occurrence,
    // as SQLite's row-by-row inserts do.
    let inserted = sqlx::query(
        "WITH clock AS (
             UPDATE feed_clock SET value = value + $1 RETURNING value - $1 AS base
         )
         INSERT INTO findings (feed_position, node_name, stream_id, seq, boot_id, received_time, time, rule_id, severity, body)
         SELECT clock.base + u.ord, u.node_name, u.stream_id, u.seq, u.boot_id, $2::timestamptz,
                u.time::timestamptz, u.rule_id, u.severity, u.body
         FROM clock, UNNEST($3::TEXT[], $4::TEXT[], $5::TEXT[], $6::BIGINT[], $7::TEXT[], $8::TEXT[], $9::TEXT[], $10::BYTEA[])
              WITH ORDINALITY AS u(node_name, stream_id, boot_id, seq, time, rule_id, severity, body, ord)
         ORDER BY u.ord
         ON CONFLICT (node_name, stream_id, seq) DO NOTHING
         RETURNING feed_position, node_name, stream_id, seq",
    )
    .bind(i64::try_from(total).unwrap_or(i64::MAX))
    .bind(received.to_string())
    .bind(columns.node_name)
    .bind(columns.stream_id)
    .bind(columns.boot_id)
    .bind(columns.seq)
    .bind(columns.time)
    .bind(columns.rule_id)
    .bind(columns.severity)
    .bind(columns.body)
    .fetch_all(&mut *conn)
    .await?;
    // RETURNING names rows by key; a key repeated in the group was stored (at most) once,
    // from its first occurrence.
    let mut keys = Vec::with_capacity(batches.len());
    let mut by_key: HashMap<(String, String, i64), (usize, Row)> = HashMap::with_capacity(total);
    for (index, (key, rows)) in batches.into_iter().enumerate() {
        for row in rows {
            by_key
                .entry((key.node_name.to_owned(), key.stream_id.to_owned(), row.seq))
                .or_insert((index, row));
        }
        keys.push(key);
    }
    let mut stored: Vec<Vec<v1::FindingRecord>> = keys.iter().map(|_| Vec::new()).collect();
    for returned in inserted {
        let position: i64 = returned.try_get(0)?;
        let key = (
            returned.try_get(1)?,
            returned.try_get(2)?,
            returned.try_get(3)?,
        );
        if let Some((index, row)) = by_key.remove(&key) {
            stored[index].push(row.into_record(position, &keys[index], received));
        }
    }
    for records in &mut stored {
        records.sort_by_key(|r| r.id);
    }
    Ok(stored)
}

/// The group's rows as one array per column, for `UNNEST`.
struct Columns {
    node_name: Vec<String>,
    stream_id: Vec<String>,
    boot_id: Vec<String>,
    seq: Vec<i64>,
    time: Vec<String>,
    rule_id: Vec<String>,
    severity: Vec<String>,
    body: Vec<Vec<u8>>,
}

impl Columns {
    fn with_capacity(n: usize) -> Self {
        Self {
            node_name: Vec::with_capacity(n),
            stream_id: Vec::with_capacity(n),
            boot_id: Vec::with_capacity(n),
            seq: Vec::with_capacity(n),
            time: Vec::with_capacity(n),
            rule_id: Vec::with_capacity(n),
            severity: Vec::with_capacity(n),
            body: Vec::with_capacity(n),
        }
    }

    fn push(&mut self, key: &Key<'_>, row: &Row) {
        self.node_name.push(key.node_name.to_owned());
        self.stream_id.push(key.stream_id.to_owned());
        self.boot_id.push(key.boot_id.to_owned());
        self.seq.push(row.seq);
        self.time.push(row.time.to_string());
        self.rule_id.push(row.rule_id.clone());
        self.severity.push(row.severity.to_owned());
        self.body.push(row.wire.encode_to_vec());
    }
}

pub(super) async fn select_findings(
    pool: &PgPool,
    filter: &SqlFilter,
    after: i64,
    limit: i64,
) -> Result<Vec<v1::FindingRecord>> {
    let mut query = QueryBuilder::<Postgres>::new(concat!(
        "SELECT feed_position, node_name, boot_id, ",
        micros!("received_time"),
        ", body FROM findings WHERE feed_position > "
    ));
    query.push_bind(after);
    for (column, values) in &filter.columns {
        query.push(format_args!(" AND {column} IN ("));
        let mut list = query.separated(", ");
        for value in values {
            list.push_bind(value.clone());
        }
        list.push_unseparated(")");
    }
    query
        .push(" ORDER BY feed_position LIMIT ")
        .push_bind(limit);
    let rows = query.build().fetch_all(pool).await?;
    rows.iter()
        .map(|row| {
            let received: i64 = row.try_get(3)?;
            let body: Vec<u8> = row.try_get(4)?;
            record(
                row.try_get(0)?,
                row.try_get(1)?,
                row.try_get(2)?,
                Timestamp::from_microsecond(received).ok(),
                &body,
            )
        })
        .collect()
}

pub(super) async fn last_id(pool: &PgPool) -> Result<Option<i64>> {
    Ok(
        sqlx::query_scalar("SELECT MAX(feed_position) FROM findings")
            .fetch_one(pool)
            .await?,
    )
}

/// Deletes one batch of findings received before `cutoff`.
pub(super) async fn delete_findings_before(pool: &PgPool, cutoff: Timestamp) -> Result<u64> {
    Ok(sqlx::query(
        "DELETE FROM findings WHERE id IN (
             SELECT id FROM findings WHERE received_time < $1::timestamptz
             ORDER BY id LIMIT $2)",
    )
    .bind(cutoff.to_string())
    .bind(DELETE_BATCH)
    .execute(pool)
    .await?
    .rows_affected())
}

pub(super) async fn record_hello(pool: &PgPool, origin: &Origin, now: Timestamp) -> Result<()> {
    sqlx::query(
        "INSERT INTO nodes (name, cluster, boot_id, stream_id, agent_version, first_seen, last_seen)
         VALUES ($1, $2, $3, $4, $5, $6::timestamptz, $6::timestamptz)
         ON CONFLICT (name) DO UPDATE SET cluster = EXCLUDED.cluster, boot_id = EXCLUDED.boot_id,
             stream_id = EXCLUDED.stream_id, agent_version = EXCLUDED.agent_version",
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
    pool: &PgPool,
    node: &str,
    now: Timestamp,
    back: impl FnOnce(Timestamp) -> model::Finding + Send,
) -> Result<Option<v1::FindingRecord>> {
    let mut tx = pool.begin().await?;
    // The row lock this takes makes a replica that saw the same return wait, then find
    // the node no longer silent: the return is reported once across replicas.
    let was_silent: Option<i64> = sqlx::query_scalar(concat!(
        "UPDATE nodes SET silent = FALSE WHERE name = $1 AND silent RETURNING ",
        micros!("last_seen")
    ))
    .bind(node)
    .fetch_optional(&mut *tx)
    .await?;
    let mut record = None;
    if let Some(last_seen) = was_silent {
        let finding = back(time(node, last_seen)?);
        record = insert_collector_finding(&mut tx, node, finding, now).await?;
    }
    sqlx::query("UPDATE nodes SET last_seen = $1::timestamptz WHERE name = $2")
        .bind(now.to_string())
        .bind(node)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(record)
}

pub(super) async fn mark_silent(
    pool: &PgPool,
    cutoff: Timestamp,
    now: Timestamp,
    silent: impl Fn(&str, Timestamp) -> model::Finding + Send,
) -> Result<Vec<v1::FindingRecord>> {
    let mut tx = pool.begin().await?;
    // Under READ COMMITTED a replica blocked on a row another marked re-checks `NOT
    // silent` once that commits, and skips it: each silence is reported once.
    let rows = sqlx::query(concat!(
        "UPDATE nodes SET silent = TRUE
         WHERE NOT silent AND last_seen < $1::timestamptz
         RETURNING name, ",
        micros!("last_seen")
    ))
    .bind(cutoff.to_string())
    .fetch_all(&mut *tx)
    .await?;
    let mut records = Vec::new();
    for row in rows {
        let node: String = row.try_get(0)?;
        let last_seen = time(&node, row.try_get(1)?)?;
        let finding = silent(&node, last_seen);
        records.extend(insert_collector_finding(&mut tx, &node, finding, now).await?);
    }
    tx.commit().await?;
    Ok(records)
}

pub(super) async fn store_posture(
    pool: &PgPool,
    node: &str,
    stream_id: &str,
    generation: i64,
    json: String,
    now: Timestamp,
) -> Result<PostureOutcome> {
    let updated = sqlx::query(
        "UPDATE nodes SET posture = $1::jsonb, posture_generation = $2, posture_stream_id = $3,
             posture_received = $4::timestamptz
         WHERE name = $5
           AND NOT (posture_stream_id IS NOT DISTINCT FROM $3 AND posture_generation > $2)",
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
        concat!(
            "name, cluster, agent_version, boot_id, ",
            micros!("first_seen"),
            " AS first_seen, ",
            micros!("last_seen"),
            " AS last_seen, silent, posture::text AS posture, ",
            micros!("posture_received"),
            " AS posture_received"
        )
    };
}

pub(super) async fn list_nodes(pool: &PgPool) -> Result<Vec<NodeRecord>> {
    // Byte order, as SQLite sorts: the database's collation could differ per server.
    let rows = sqlx::query(concat!(
        "SELECT ",
        node_columns!(),
        " FROM nodes ORDER BY name COLLATE \"C\""
    ))
    .fetch_all(pool)
    .await?;
    rows.iter().map(node_from_row).collect()
}

pub(super) async fn node(pool: &PgPool, name: &str) -> Result<Option<NodeRecord>> {
    let row = sqlx::query(concat!(
        "SELECT ",
        node_columns!(),
        " FROM nodes WHERE name = $1"
    ))
    .bind(name)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(node_from_row).transpose()
}

pub(super) async fn node_counts(pool: &PgPool) -> Result<(i64, i64)> {
    Ok(sqlx::query_as(
        "SELECT COUNT(*) FILTER (WHERE NOT silent), COUNT(*) FILTER (WHERE silent) FROM nodes",
    )
    .fetch_one(pool)
    .await?)
}

/// Stores a finding the collector made about `node` under the next collector sequence
/// number (one counter shared by every replica).
async fn insert_collector_finding(
    conn: &mut PgConnection,
    node: &str,
    mut finding: model::Finding,
    now: Timestamp,
) -> Result<Option<v1::FindingRecord>> {
    let seq: i64 = sqlx::query_scalar(
        "INSERT INTO counters (name, value) VALUES ('collector_seq', 1)
         ON CONFLICT (name) DO UPDATE SET value = counters.value + 1
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
    let record = insert(conn, vec![(key, vec![Row::new(finding)])], now)
        .await?
        .pop()
        .and_then(|mut records| records.pop());
    if record.is_some() {
        notify(conn).await?;
    }
    Ok(record)
}

fn node_from_row(row: &PgRow) -> Result<NodeRecord> {
    let name: String = row.try_get("name")?;
    let posture_received = row
        .try_get::<Option<i64>, _>("posture_received")?
        .map(|micros| time(&name, micros))
        .transpose()?;
    let times = (
        time(&name, row.try_get("first_seen")?)?,
        time(&name, row.try_get("last_seen")?)?,
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

/// A time read back as microseconds since the epoch.
fn time(node: &str, micros: i64) -> Result<Timestamp> {
    Timestamp::from_microsecond(micros).map_err(|source| StoreError::CorruptTime {
        node: node.to_owned(),
        value: format!("{micros} µs since the epoch"),
        source,
    })
}
