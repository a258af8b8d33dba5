//! The finding log: idempotent inserts, reads in id order (optionally filtered), and
//! retention. The SQL is in `sqlite` and `postgres`; paging and filtering are here.

use jiff::Timestamp;
use nodeward_proto::{model, v1};
use tracing::warn;

use super::{Pool, Result, Store, id_from, postgres, severity_name, sqlite};

/// Rows read per query when part of a filter can only be applied after decoding.
const SCAN_BATCH: usize = 500;
/// Rows deleted per statement, so retention never holds the write lock for long.
pub(super) const DELETE_BATCH: i64 = 5000;

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

/// The columns of a finding besides its key, as both backends store them.
pub(super) struct Row {
    pub seq: i64,
    pub time: Timestamp,
    pub rule_id: String,
    pub severity: &'static str,
    pub wire: v1::Finding,
}

impl Row {
    pub fn new(finding: model::Finding) -> Self {
        Self {
            seq: i64::try_from(finding.seq).unwrap_or(i64::MAX),
            time: finding.time,
            rule_id: finding.rule_id.clone(),
            severity: severity_name(finding.severity),
            wire: v1::Finding::from(finding),
        }
    }

    /// The record of this finding once stored under `id`.
    pub fn into_record(self, id: i64, key: &Key<'_>, received: Timestamp) -> v1::FindingRecord {
        v1::FindingRecord {
            id: id_from(id),
            node_name: key.node_name.to_owned(),
            boot_id: key.boot_id.to_owned(),
            received_time: Some(super::wire_time(received)),
            finding: Some(self.wire),
        }
    }
}

/// One agent's batch of findings, as it waits to be stored with others.
#[derive(Debug, Clone)]
pub struct Batch {
    pub origin: super::Origin,
    pub findings: Vec<model::Finding>,
}

impl Store {
    /// Stores a batch in one transaction and returns the findings that were new, as
    /// records in id order (resent ones are skipped). The collector groups batches
    /// ([`Store::insert_batches`]); this is the one-batch case.
    #[cfg(test)]
    pub async fn insert_findings(
        &self,
        origin: &super::Origin,
        findings: Vec<model::Finding>,
        received: Timestamp,
    ) -> Result<Vec<v1::FindingRecord>> {
        let batch = Batch {
            origin: origin.clone(),
            findings,
        };
        let mut records = self
            .insert_batches(std::slice::from_ref(&batch), received)
            .await?;
        Ok(records.pop().unwrap_or_default())
    }

    /// Stores several batches (from any agents) in one transaction: all or none. Returns,
    /// per batch, the findings that were new, as records in id order. A finding repeated
    /// in the group is stored once, under the first batch that holds it.
    pub async fn insert_batches(
        &self,
        batches: &[Batch],
        received: Timestamp,
    ) -> Result<Vec<Vec<v1::FindingRecord>>> {
        let batches: Vec<(Key<'_>, Vec<Row>)> = batches
            .iter()
            .map(|batch| {
                let key = Key {
                    node_name: &batch.origin.node_name,
                    stream_id: &batch.origin.stream_id,
                    boot_id: &batch.origin.boot_id,
                };
                (key, batch.findings.iter().cloned().map(Row::new).collect())
            })
            .collect();
        match &self.pool {
            Pool::Sqlite(pool) => sqlite::insert_batches(pool, batches, received).await,
            Pool::Postgres(pool) => postgres::insert_batches(pool, batches, received).await,
        }
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
        let sql_filter = SqlFilter::of(filter);
        let mut records = Vec::new();
        let mut cursor = after;
        loop {
            let after = i64::try_from(cursor).unwrap_or(i64::MAX);
            let limit = i64::try_from(batch).unwrap_or(i64::MAX);
            let rows = match &self.pool {
                Pool::Sqlite(pool) => {
                    sqlite::select_findings(pool, &sql_filter, after, limit).await?
                }
                Pool::Postgres(pool) => {
                    postgres::select_findings(pool, &sql_filter, after, limit).await?
                }
            };
            let read = rows.len();
            for record in rows {
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
        let id = match &self.pool {
            Pool::Sqlite(pool) => sqlite::last_id(pool).await?,
            Pool::Postgres(pool) => postgres::last_id(pool).await?,
        };
        Ok(id.map_or(0, id_from))
    }

    /// Deletes the findings received before `cutoff`; returns how many.
    pub async fn delete_findings_before(&self, cutoff: Timestamp) -> Result<u64> {
        let mut deleted = 0;
        loop {
            let batch = match &self.pool {
                Pool::Sqlite(pool) => sqlite::delete_findings_before(pool, cutoff).await?,
                Pool::Postgres(pool) => postgres::delete_findings_before(pool, cutoff).await?,
            };
            deleted += batch;
            if batch < DELETE_BATCH.unsigned_abs() {
                return Ok(deleted);
            }
        }
    }
}

/// The part of a filter SQL can decide: each list, when not empty, restricts its column.
pub(super) struct SqlFilter {
    pub columns: Vec<(&'static str, Vec<String>)>,
}

impl SqlFilter {
    fn of(filter: &model::FindingFilter) -> Self {
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
        let columns = [
            ("node_name", filter.nodes.clone()),
            ("rule_id", filter.rule_ids.clone()),
            ("severity", severities),
        ]
        .into_iter()
        .filter(|(_, values)| !values.is_empty())
        .collect();
        Self { columns }
    }
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
