//! Group commit: one task per collector stores the finding batches of every agent
//! stream. It takes whatever is queued (up to a limit) and writes it in one transaction,
//! so the store's commit rate (each commit waits for the disk) bounds transactions, not
//! batches. Each batch is answered only after the transaction holding it committed: an
//! agent deletes what was acknowledged, so an acknowledgement must never precede
//! durability.
//!
//! A group that fails is retried batch by batch, so one agent's bad batch (one the
//! database refuses) fails only that agent's stream, not the others it was grouped with.

use std::sync::Arc;

use jiff::Timestamp;
use tokio::sync::{mpsc, oneshot};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{debug, warn};

use super::publisher::Publisher;
use crate::{
    metrics::Metrics,
    store::{Batch, Result, Store, StoreError},
};

/// Batches waiting for the writer. A stream waits for its batch's answer before it
/// sends the next, so this bounds how many streams can be waiting at once before
/// senders wait for room (backpressure, never a drop).
pub const QUEUE: usize = 256;
/// The most batches in one transaction.
pub const MAX_GROUP_BATCHES: usize = 128;
/// The most findings in one transaction (agents send up to 256 a batch); a group stops
/// growing once it reaches this.
const MAX_GROUP_FINDINGS: usize = 8192;

/// One batch and where its outcome goes: the number of new findings once committed.
pub struct Job {
    pub batch: Batch,
    pub reply: oneshot::Sender<Result<usize>>,
}

/// Starts the writer on `tracker`; it stops when `token` is cancelled or every sender
/// is gone.
pub fn start(
    store: Arc<Store>,
    publisher: Arc<Publisher>,
    metrics: Arc<Metrics>,
    tracker: &TaskTracker,
    token: CancellationToken,
) -> mpsc::Sender<Job> {
    let (jobs, queue) = mpsc::channel(QUEUE);
    let writer = Writer {
        store,
        publisher,
        metrics,
    };
    tracker.spawn(writer.run(queue, token));
    jobs
}

struct Writer {
    store: Arc<Store>,
    publisher: Arc<Publisher>,
    metrics: Arc<Metrics>,
}

impl Writer {
    async fn run(self, mut queue: mpsc::Receiver<Job>, token: CancellationToken) {
        loop {
            let first = tokio::select! {
                // Queued jobs are dropped unanswered: their agents resend.
                () = token.cancelled() => return,
                job = queue.recv() => match job {
                    Some(job) => job,
                    None => return,
                },
            };
            let mut findings = first.batch.findings.len();
            let mut group = vec![first];
            while group.len() < MAX_GROUP_BATCHES && findings < MAX_GROUP_FINDINGS {
                let Ok(job) = queue.try_recv() else {
                    break;
                };
                findings += job.batch.findings.len();
                group.push(job);
            }
            // Not raced against the token: a transaction under way is finished and
            // answered.
            self.commit(group).await;
        }
    }

    /// Stores a group in one transaction and answers each batch; on failure, stores each
    /// batch on its own.
    async fn commit(&self, group: Vec<Job>) {
        let (batches, replies): (Vec<Batch>, Vec<_>) =
            group.into_iter().map(|job| (job.batch, job.reply)).unzip();
        match self.write(&batches).await {
            Ok(counts) => {
                debug!(batches = batches.len(), "finding batches committed");
                for (reply, count) in replies.into_iter().zip(counts) {
                    // The stream may have ended meanwhile; its agent resends.
                    let _ = reply.send(Ok(count));
                }
            }
            Err(err) if batches.len() == 1 => {
                if let Some(reply) = replies.into_iter().next() {
                    let _ = reply.send(Err(err));
                }
            }
            Err(err) => {
                warn!(
                    error = format!("{:#}", anyhow::Error::new(err)),
                    batches = batches.len(),
                    "storing a group of finding batches failed; storing each on its own"
                );
                for (batch, reply) in batches.iter().zip(replies) {
                    let outcome = self
                        .write(std::slice::from_ref(batch))
                        .await
                        .map(|counts| counts.into_iter().sum());
                    let _ = reply.send(outcome);
                }
            }
        }
    }

    /// One transaction; the new findings of each batch are published once committed.
    async fn write(&self, batches: &[Batch]) -> Result<Vec<usize>, StoreError> {
        let _order = self.publisher.order().await;
        let stored = self.store.insert_batches(batches, Timestamp::now()).await?;
        self.metrics.batches_committed(batches.len());
        let counts = stored.iter().map(Vec::len).collect();
        self.publisher.stored(stored.into_iter().flatten());
        Ok(counts)
    }
}
