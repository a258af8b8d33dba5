//! The finding log: idempotent inserts, reads in id order (optionally filtered), and
//! retention.

use jiff::Timestamp;
use nodeward_proto::{model, v1};
use prost::Message as _;
use sqlx::{QueryBuilder, Row as _, Sqlite, SqliteConnection, sqlite::SqliteRow};
use tracing::warn;

use super::{Result, Store, StoreError, id_from, severity_name, wire_time};

/// Rows read per query when part of a filter can only be applied after decoding.
const SCAN_BATCH: usize = 500;
/// Rows deleted per statement, so retention never holds the write lock for long.
const DELETE_BATCH: i64 = 5000;

/// Matching findings in id order, and whether more matching ones follow.
#[derive(Debug, Default)]
pub struct FindingsPage {
    pub records: Vec<v1::FindingRecord>,
    pub more: bool,
}

/// Who a finding is stored under: the key is (node, stream, seq).
pub(super) struct Key<'a> {
    pub node_name: &'a str,
    pub stream_id: &'a str,
    pub boot_id: &'a str,
}

impl Store {
    /// Stores a batch in one transaction and returns the findings that were new, as
    /// records in id order (resent ones are skipped).
    pub async fn insert_findings(
        &self,
        origin: &super::Origin,
        findings: Vec<model::Finding>,
        received: Timestamp,
    ) -> Result<Vec<v1::FindingRecord>> {
        let key = Key {
            node_name: &origin.node_name,
            stream_id: &origin.stream_id,
            boot_id: &origin.boot_id,
        };
        let mut tx = self.pool.begin().await?;
        let mut records = Vec::new();
        for finding in findings {
            if let Some(record) = insert(&mut tx, &key, finding, received).await? {
                records.push(record);
            }
        }
        tx.commit().await?;
        Ok(records)
    }

    /// Up to `limit` records with an id above `after`, in id order.
    pub async fn findings_after(&self, after: u64, limit: u32) -> Result<Vec<v1::FindingRecord>> {
        let page = self
            .findings_page(&model::FindingFilter::default(), after, limit)
            .await?;
        Ok(page.records)
    }

    /// Up to `limit` records matching `filter` with an id above `after`, in id order.
    ///
    /// Nodes, rules and severity are filtered in SQL; categories and namespaces live in
    /// the encoded finding, so those are filtered after decoding, reading on until the
    /// page is full. One matching record is read ahead to tell whether more follow.
    pub async fn findings_page(
        &self,
        filter: &model::FindingFilter,
        after: u64,
        limit: u32,
    ) -> Result<FindingsPage> {
        let want = usize::try_from(limit.max(1)).unwrap_or(usize::MAX) + 1;
        let decoded_filter = !filter.categories.is_empty() || !filter.namespaces.is_empty();
        let batch = if decoded_filter {
            want.max(SCAN_BATCH)
        } else {
            want
        };
        let mut records = Vec::new();
        let mut cursor = after;
        loop {
            let rows = select(filter, cursor, batch)
                .build()
                .fetch_all(&self.pool)
                .await?;
            let read = rows.len();
            for row in rows {
                let record = record_from_row(&row)?;
                cursor = record.id;
                if !decoded_filter || matches(filter, &record) {
                    records.push(record);
                    if records.len() == want {
                        break;
                    }
                }
            }
            if records.len() == want || read < batch {
                break;
            }
        }
        let more = records.len() == want;
        records.truncate(want - 1);
        Ok(FindingsPage { records, more })
    }

    /// The largest finding id stored so far (0 when there is none).
    pub async fn last_id(&self) -> Result<u64> {
        let id: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM findings")
            .fetch_one(&self.pool)
            .await?;
        Ok(id.map_or(0, id_from))
    }

    /// Deletes the findings received before `cutoff`; returns how many.
    pub async fn delete_findings_before(&self, cutoff: Timestamp) -> Result<u64> {
        let cutoff = cutoff.to_string();
        let mut deleted = 0;
        loop {
            let batch = sqlx::query(
                "DELETE FROM findings WHERE id IN (
                     SELECT id FROM findings
                     WHERE julianday(received_time) < julianday(?1)
                     ORDER BY id LIMIT ?2)",
            )
            .bind(&cutoff)
            .bind(DELETE_BATCH)
            .execute(&self.pool)
            .await?
            .rows_affected();
            deleted += batch;
            if batch < DELETE_BATCH.unsigned_abs() {
                return Ok(deleted);
            }
        }
    }
}

/// Inserts one finding unless its key is already stored; returns the new record.
pub(super) async fn insert(
    conn: &mut SqliteConnection,
    key: &Key<'_>,
    finding: model::Finding,
    received: Timestamp,
) -> Result<Option<v1::FindingRecord>> {
    let (time, rule_id, severity) = (
        finding.time.to_string(),
        finding.rule_id.clone(),
        severity_name(finding.severity),
    );
    let seq = i64::try_from(finding.seq).unwrap_or(i64::MAX);
    let wire = v1::Finding::from(finding);
    let inserted = sqlx::query(
        "INSERT INTO findings (node_name, stream_id, seq, boot_id, received_time, time, rule_id, severity, body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT (node_name, stream_id, seq) DO NOTHING
         RETURNING id",
    )
    .bind(key.node_name)
    .bind(key.stream_id)
    .bind(seq)
    .bind(key.boot_id)
    .bind(received.to_string())
    .bind(time)
    .bind(rule_id)
    .bind(severity)
    .bind(wire.encode_to_vec())
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = inserted else {
        return Ok(None);
    };
    Ok(Some(v1::FindingRecord {
        id: id_from(row.try_get(0)?),
        node_name: key.node_name.to_owned(),
        boot_id: key.boot_id.to_owned(),
        received_time: Some(wire_time(received)),
        finding: Some(wire),
    }))
}

/// The query for the part of `filter` SQL can decide.
fn select(filter: &model::FindingFilter, after: u64, limit: usize) -> QueryBuilder<Sqlite> {
    let mut query = QueryBuilder::new(
        "SELECT id, node_name, boot_id, received_time, body FROM findings WHERE id > ",
    );
    query.push_bind(i64::try_from(after).unwrap_or(i64::MAX));
    let severities: Vec<String> = filter.min_severity.map_or_else(Vec::new, |min| {
        [
            model::Severity::Info,
            model::Severity::Low,
            model::Severity::Medium,
            model::Severity::High,
            model::Severity::Critical,
        ]
        .into_iter()
        .filter(|s| *s >= min)
        .map(|s| severity_name(s).to_owned())
        .collect()
    });
    for (column, values) in [
        ("node_name", filter.nodes.clone()),
        ("rule_id", filter.rule_ids.clone()),
        ("severity", severities),
    ] {
        if values.is_empty() {
            continue;
        }
        query.push(format_args!(" AND {column} IN ("));
        let mut list = query.separated(", ");
        for value in values {
            list.push_bind(value);
        }
        list.push_unseparated(")");
    }
    query
        .push(" ORDER BY id LIMIT ")
        .push_bind(i64::try_from(limit).unwrap_or(i64::MAX));
    query
}

fn record_from_row(row: &SqliteRow) -> Result<v1::FindingRecord> {
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
}

/// Whether a stored record passes `filter`. A record that no longer converts was valid
/// when it was stored, so it is logged and left out rather than failing every reader.
pub fn matches(filter: &model::FindingFilter, record: &v1::FindingRecord) -> bool {
    match model::FindingRecord::try_from(record.clone()) {
        Ok(record) => filter.matches(&record),
        Err(err) => {
            warn!(id = record.id, error = %err, "stored finding left out of a filtered read");
            false
        }
    }
}
