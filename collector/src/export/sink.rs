//! Where exported findings go: a JSON-lines file (or standard output) and a webhook. Each
//! sink receives the same encoded batch; each counts what it delivered and what it gave
//! up on in the shared [`ExportStats`].

mod file;
mod webhook;

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use nodeward_proto::model::FindingRecord;
use tokio_util::sync::CancellationToken;

pub use self::{file::FileSink, webhook::WebhookSink};
use super::{ExportError, Format, Result, ocsf};

/// Export counters, to be exposed as metrics (`nodeward_exported_total`, ...).
///
/// Both count per finding and per sink: a finding written to the file and posted to the
/// webhook counts twice in `exported_total`.
#[derive(Debug, Default)]
pub struct ExportStats {
    /// Findings a sink delivered.
    pub exported_total: AtomicU64,
    /// Findings a sink gave up on, and stored findings that could not be encoded.
    pub export_failures_total: AtomicU64,
}

impl ExportStats {
    pub fn exported(&self) -> u64 {
        self.exported_total.load(Ordering::Relaxed)
    }

    pub fn failures(&self) -> u64 {
        self.export_failures_total.load(Ordering::Relaxed)
    }

    pub(crate) fn add_exported(&self, n: usize) {
        self.exported_total.fetch_add(count(n), Ordering::Relaxed);
    }

    pub(crate) fn add_failures(&self, n: usize) {
        self.export_failures_total
            .fetch_add(count(n), Ordering::Relaxed);
    }
}

fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// One finding, encoded once for every sink.
#[derive(Debug, Clone)]
pub struct Encoded {
    pub id: u64,
    /// One JSON object, without a trailing newline.
    pub json: Bytes,
}

impl Encoded {
    pub fn new(format: Format, record: &FindingRecord) -> Result<Self> {
        let json = match format {
            Format::Json => serde_json::to_vec(record),
            Format::Ocsf => serde_json::to_vec(&ocsf::to_ocsf(record)),
        }
        .map_err(|source| ExportError::Encode {
            id: record.id,
            source,
        })?;
        Ok(Self {
            id: record.id,
            json: json.into(),
        })
    }
}

/// The exporter was cancelled before a sink finished; the batch is not done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cancelled;

pub enum Sink {
    File(FileSink),
    // Boxed: the HTTP client is large, and there is one sink of each kind at most.
    Webhook(Box<WebhookSink>),
}

impl Sink {
    /// Delivers a batch, retrying as the sink's policy says. Failures are logged and
    /// counted here; only cancellation stops the caller.
    pub async fn deliver(
        &mut self,
        batch: &[Encoded],
        stats: &ExportStats,
        cancel: &CancellationToken,
    ) -> Result<(), Cancelled> {
        match self {
            Self::File(sink) => {
                sink.deliver(batch, stats).await;
                Ok(())
            }
            Self::Webhook(sink) => sink.deliver(batch, stats, cancel).await,
        }
    }
}

/// The ids of a batch, for logs.
fn ids(batch: &[Encoded]) -> Vec<u64> {
    batch.iter().map(|e| e.id).collect()
}
