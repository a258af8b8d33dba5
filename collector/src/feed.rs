//! The live feed: every newly stored finding, to every SOC subscriber, in id order.
//!
//! Ingestion holds one lock across "store, then publish", so records are published in
//! the order their ids were assigned even with many agents writing at once. Subscribers
//! rely on that order to resume without gaps: anything they see on the feed with an id
//! at or below what they already sent is a duplicate, and anything they miss because they
//! fell behind is still in the store.

use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use nodeward_proto::{model, v1};
use tokio::sync::{Mutex, broadcast};

use crate::{
    metrics::Metrics,
    silence,
    store::{Origin, Result, Store},
};

/// Records buffered per subscriber before it is told it lagged (it then reads the store).
const FEED_CAPACITY: usize = 4096;

pub struct Feed {
    store: Arc<Store>,
    live: broadcast::Sender<Arc<v1::FindingRecord>>,
    publish_order: Mutex<()>,
    metrics: Arc<Metrics>,
}

impl Feed {
    /// A feed whose metrics are not exposed anywhere.
    #[cfg(test)]
    pub fn new(store: Arc<Store>) -> Self {
        Self::with_metrics(store, Arc::default())
    }

    pub fn with_metrics(store: Arc<Store>, metrics: Arc<Metrics>) -> Self {
        Self {
            store,
            live: broadcast::channel(FEED_CAPACITY).0,
            publish_order: Mutex::new(()),
            metrics,
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

    /// Stores a batch and publishes what was new; returns the number of new findings.
    pub async fn ingest(&self, origin: &Origin, findings: Vec<model::Finding>) -> Result<usize> {
        let _order = self.publish_order.lock().await;
        let records = self
            .store
            .insert_findings(origin, findings, Timestamp::now())
            .await?;
        let new = records.len();
        self.publish(records);
        Ok(new)
    }

    /// Records that `node` was heard from; a node marked silent is reported back.
    pub async fn seen(&self, node: &str) -> Result<()> {
        let _order = self.publish_order.lock().await;
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
        self.publish(back);
        Ok(())
    }

    /// Marks silent the nodes not heard from for `after` and reports each; returns how
    /// many went silent.
    pub async fn mark_silent(&self, after: SignedDuration) -> Result<usize> {
        let _order = self.publish_order.lock().await;
        let now = Timestamp::now();
        let cutoff = now.checked_sub(after).unwrap_or(Timestamp::MIN);
        let records = self
            .store
            .mark_silent(cutoff, now, |node, last_seen| {
                silence::silent_finding(node, last_seen, now)
            })
            .await?;
        let n = records.len();
        self.publish(records);
        Ok(n)
    }

    /// Publishes newly stored records; the caller holds `publish_order`.
    fn publish(&self, records: impl IntoIterator<Item = v1::FindingRecord>) {
        for record in records {
            self.metrics.finding_stored(&record);
            // No receivers is fine: nobody is subscribed right now.
            let _ = self.live.send(Arc::new(record));
        }
    }

    /// A receiver of everything published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<v1::FindingRecord>> {
        self.live.subscribe()
    }
}
