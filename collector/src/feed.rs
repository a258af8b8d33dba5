//! The live feed: every newly stored finding, to every SOC subscriber, in id order.
//!
//! Agents' batches are stored by one writer task ([`writer`]) that commits whatever is
//! queued in one transaction and acknowledges each batch after that commit. How stored
//! records reach subscribers depends on the store ([`publisher`]): with SQLite this
//! collector is the only writer and publishes what it committed, under a lock that keeps
//! publication in id order; with PostgreSQL other replicas write too, so a [`tail`] task
//! reads every new record from the store in feed order, woken by this collector's commits,
//! by the other replicas' notifications, and by a timer.
//!
//! Subscribers rely on that order to resume without gaps: anything they see on the feed
//! with an id at or below what they already sent is a duplicate, and anything they miss
//! because they fell behind is still in the store.

mod publisher;
mod tail;
mod writer;

use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use nodeward_proto::{model, v1};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use self::{publisher::Publisher, writer::Job};
use crate::{
    metrics::Metrics,
    silence,
    store::{Batch, Origin, Result, Store, StoreError},
};

/// Why a batch was not stored.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("storing the findings failed")]
    Store(#[from] StoreError),
    /// The collector is shutting down: the batch may or may not have been stored, and
    /// the agent resends it either way.
    #[error("the collector's writer has stopped")]
    Stopped,
}

pub struct Feed {
    store: Arc<Store>,
    publisher: Arc<Publisher>,
    jobs: mpsc::Sender<Job>,
    metrics: Arc<Metrics>,
    tracker: TaskTracker,
    token: CancellationToken,
}

impl Feed {
    /// A feed whose metrics are not exposed anywhere.
    #[cfg(test)]
    pub fn new(store: Arc<Store>) -> Self {
        Self::with_metrics(store, Arc::default())
    }

    /// Starts the feed's tasks (the writer and, for a shared store, the tail); they stop
    /// on [`Feed::close`] or when the feed is dropped. Must be called within a Tokio
    /// runtime.
    pub fn with_metrics(store: Arc<Store>, metrics: Arc<Metrics>) -> Self {
        let tracker = TaskTracker::new();
        let token = CancellationToken::new();
        let publisher = Arc::new(Publisher::start(
            store.clone(),
            metrics.clone(),
            &tracker,
            &token,
        ));
        let jobs = writer::start(
            store.clone(),
            publisher.clone(),
            metrics.clone(),
            &tracker,
            token.clone(),
        );
        Self {
            store,
            publisher,
            jobs,
            metrics,
            tracker,
            token,
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn store_arc(&self) -> Arc<Store> {
        self.store.clone()
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Stores a batch (with whatever other agents' batches are queued) and publishes what
    /// was new; returns the number of new findings once they are committed. Waits while
    /// the writer's queue is full.
    pub async fn ingest(
        &self,
        origin: &Origin,
        findings: Vec<model::Finding>,
    ) -> Result<usize, IngestError> {
        let (reply, stored) = oneshot::channel();
        let batch = Batch {
            origin: origin.clone(),
            findings,
        };
        self.jobs
            .send(Job { batch, reply })
            .await
            .map_err(|_| IngestError::Stopped)?;
        Ok(stored.await.map_err(|_| IngestError::Stopped)??)
    }

    /// Records that `node` was heard from; a node marked silent is reported back.
    pub async fn seen(&self, node: &str) -> Result<()> {
        let _order = self.publisher.order().await;
        let now = Timestamp::now();
        let back = self
            .store
            .seen(node, now, |last_seen| {
                silence::back_finding(node, last_seen, now)
            })
            .await?;
        if back.is_some() {
            self.metrics.fleet_changed();
        }
        self.publisher.stored(back);
        Ok(())
    }

    /// Marks silent the nodes not heard from for `after` and reports each; returns how
    /// many went silent.
    pub async fn mark_silent(&self, after: SignedDuration) -> Result<usize> {
        let _order = self.publisher.order().await;
        let now = Timestamp::now();
        let cutoff = now.checked_sub(after).unwrap_or(Timestamp::MIN);
        let records = self
            .store
            .mark_silent(cutoff, now, |node, last_seen| {
                silence::silent_finding(node, last_seen, now)
            })
            .await?;
        let n = records.len();
        self.publisher.stored(records);
        Ok(n)
    }

    /// A receiver of everything published from now on: whatever is stored after this
    /// returns reaches it, in id order.
    pub async fn subscribe(&self) -> Result<broadcast::Receiver<Arc<v1::FindingRecord>>> {
        self.publisher.subscribe().await
    }

    /// Stops the feed's tasks: the writer finishes the transaction it is in (answering
    /// its batches) and refuses what is still queued.
    pub async fn close(&self) {
        self.token.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

#[cfg(test)]
mod tests;
