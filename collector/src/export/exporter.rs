//! The export task: reads stored findings after its cursor, in id order, hands each batch
//! to every sink, then moves the cursor. The live feed only says "something new"; what
//! is exported always comes from the store, so a slow sink never makes it skip a finding.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use nodeward_proto::{model, v1};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{
    ExportConfig, ExportError, Format, Result,
    sink::{Cancelled, Encoded, ExportStats, FileSink, Sink, WebhookSink},
};
use crate::feed::Feed;

/// Wait before reading the store again after it failed.
const STORE_RETRY: Duration = Duration::from_secs(1);

pub struct Exporter {
    format: Format,
    batch_size: u32,
    sinks: Vec<Sink>,
    stats: Arc<ExportStats>,
    cursor_file: Option<PathBuf>,
    /// Export findings with an id above this; `None`: from the newest stored at start.
    start_after: Option<u64>,
}

impl Exporter {
    /// Opens the file and builds the HTTP client, so that a bad path or missing root
    /// certificates stop the collector at start rather than at the first finding.
    pub fn new(config: &ExportConfig) -> Result<Self> {
        let mut sinks = Vec::new();
        if let Some(path) = &config.file {
            sinks.push(Sink::File(FileSink::open(path)?));
        }
        if let Some(webhook) = &config.webhook {
            sinks.push(Sink::Webhook(Box::new(WebhookSink::new(webhook)?)));
        }
        if sinks.is_empty() {
            return Err(ExportError::Config(
                "export: set `file`, `webhook` or both".into(),
            ));
        }
        let start_after = match &config.cursor_file {
            Some(path) => read_cursor(path)?,
            None => None,
        };
        Ok(Self {
            format: config.format,
            batch_size: config.batch_size.max(1),
            sinks,
            stats: Arc::default(),
            cursor_file: config.cursor_file.clone(),
            start_after,
        })
    }

    /// Starts after finding `id` instead of the cursor file or the newest stored finding.
    #[cfg(test)]
    #[must_use]
    pub fn start_after(mut self, id: u64) -> Self {
        self.start_after = Some(id);
        self
    }

    /// The counters this exporter updates.
    pub fn stats(&self) -> Arc<ExportStats> {
        self.stats.clone()
    }

    /// Runs [`Exporter::run`] on its own task (the collector runs it on its tracker).
    #[cfg(test)]
    pub fn spawn(self, feed: Arc<Feed>, cancel: CancellationToken) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.run(feed, cancel))
    }

    /// Exports until cancelled or the feed closes. Never fails: store errors are retried,
    /// sink failures logged and counted.
    pub async fn run(mut self, feed: Arc<Feed>, cancel: CancellationToken) {
        // Subscribed before the cursor is read, so a finding stored in between still
        // rings the bell.
        let Some(mut live) = subscribe(&feed, &cancel).await else {
            return;
        };
        let Some(mut cursor) = start_cursor(self.start_after, &feed, &cancel).await else {
            return;
        };
        info!(after = cursor, format = ?self.format, sinks = self.sinks.len(), "exporting findings");
        loop {
            let page = tokio::select! {
                () = cancel.cancelled() => return,
                page = feed.store().findings_after(cursor, self.batch_size) => page,
            };
            let page = match page {
                Ok(page) => page,
                Err(err) => {
                    warn!(
                        error = format!("{:#}", anyhow::Error::new(err)),
                        after = cursor,
                        "reading findings to export failed; retrying"
                    );
                    if sleep_or_cancel(STORE_RETRY, &cancel).await.is_err() {
                        return;
                    }
                    continue;
                }
            };
            let Some(last) = page.last().map(|r| r.id) else {
                // Caught up: wait for something newer than the cursor.
                loop {
                    let rang = tokio::select! {
                        () = cancel.cancelled() => return,
                        rang = live.recv() => rang,
                    };
                    match rang {
                        Ok(record) if record.id <= cursor => {}
                        Ok(_) => break,
                        Err(RecvError::Lagged(missed)) => {
                            debug!(
                                missed,
                                after = cursor,
                                "export fell behind the live feed; reading the store"
                            );
                            break;
                        }
                        Err(RecvError::Closed) => return,
                    }
                }
                continue;
            };
            if self.export(page, &cancel).await.is_err() {
                return;
            }
            cursor = last;
            save_cursor(self.cursor_file.as_deref(), cursor).await;
        }
    }

    /// Encodes a page and hands it to every sink.
    pub(crate) async fn export(
        &mut self,
        page: Vec<v1::FindingRecord>,
        cancel: &CancellationToken,
    ) -> Result<(), Cancelled> {
        let batch: Vec<Encoded> = page
            .into_iter()
            .filter_map(|record| match encode(self.format, record) {
                Ok(encoded) => Some(encoded),
                Err(err) => {
                    self.stats.add_failures(1);
                    warn!(
                        error = format!("{:#}", anyhow::Error::new(err)),
                        "stored finding skipped by the export"
                    );
                    None
                }
            })
            .collect();
        if batch.is_empty() {
            return Ok(());
        }
        for sink in &mut self.sinks {
            sink.deliver(&batch, &self.stats, cancel).await?;
        }
        Ok(())
    }
}

async fn start_cursor(
    start_after: Option<u64>,
    feed: &Feed,
    cancel: &CancellationToken,
) -> Option<u64> {
    if let Some(after) = start_after {
        return Some(after);
    }
    loop {
        let last = tokio::select! {
            () = cancel.cancelled() => return None,
            last = feed.store().last_id() => last,
        };
        match last {
            Ok(last) => return Some(last),
            Err(err) => {
                warn!(
                    error = format!("{:#}", anyhow::Error::new(err)),
                    "reading where the export starts failed; retrying"
                );
                sleep_or_cancel(STORE_RETRY, cancel).await.ok()?;
            }
        }
    }
}

/// A receiver of the live feed, retrying store errors; `None` once cancelled.
async fn subscribe(
    feed: &Feed,
    cancel: &CancellationToken,
) -> Option<tokio::sync::broadcast::Receiver<Arc<v1::FindingRecord>>> {
    loop {
        let live = tokio::select! {
            () = cancel.cancelled() => return None,
            live = feed.subscribe() => live,
        };
        match live {
            Ok(live) => return Some(live),
            Err(err) => {
                warn!(
                    error = format!("{:#}", anyhow::Error::new(err)),
                    "subscribing to the feed to export failed; retrying"
                );
                sleep_or_cancel(STORE_RETRY, cancel).await.ok()?;
            }
        }
    }
}

/// Records the cursor; failing only costs duplicates after a restart, so it warns.
async fn save_cursor(path: Option<&Path>, cursor: u64) {
    let Some(path) = path else {
        return;
    };
    if let Err(err) = write_cursor(path, cursor).await {
        warn!(
            error = format!("{:#}", anyhow::Error::new(err)),
            cursor, "saving the export cursor failed"
        );
    }
}

fn encode(format: Format, record: v1::FindingRecord) -> Result<Encoded> {
    let id = record.id;
    let record = model::FindingRecord::try_from(record)
        .map_err(|source| ExportError::Decode { id, source })?;
    Encoded::new(format, &record)
}

async fn sleep_or_cancel(delay: Duration, cancel: &CancellationToken) -> Result<(), Cancelled> {
    tokio::select! {
        () = cancel.cancelled() => Err(Cancelled),
        () = tokio::time::sleep(delay) => Ok(()),
    }
}

/// The saved cursor; `None` when the file does not exist yet.
fn read_cursor(path: &Path) -> Result<Option<u64>> {
    let content = match std::fs::read_to_string(path) {
        Ok(content) => content,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(ExportError::Cursor {
                path: path.to_owned(),
                source,
            });
        }
    };
    content
        .trim()
        .parse()
        .map(Some)
        .map_err(|_| ExportError::BadCursor {
            path: path.to_owned(),
            content,
        })
}

/// Replaces the cursor file atomically, so a crash leaves the old cursor or the new one.
async fn write_cursor(path: &Path, cursor: u64) -> Result<()> {
    let cursor_err = |source| ExportError::Cursor {
        path: path.to_owned(),
        source,
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    tokio::fs::write(&tmp, format!("{cursor}\n"))
        .await
        .map_err(cursor_err)?;
    tokio::fs::rename(&tmp, path).await.map_err(cursor_err)
}
