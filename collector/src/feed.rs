//! The live feed: every newly stored finding, to every SOC subscriber, in id order.
//!
//! Ingestion holds one lock across "store, then publish", so records are published in
//! the order their ids were assigned even with many agents writing at once. Subscribers
//! rely on that order to resume without gaps: anything they see on the feed with an id
//! at or below what they already sent is a duplicate, and anything they miss because they
//! fell behind is still in the store.

use std::sync::Arc;

use jiff::Timestamp;
use nodeward_proto::{model, v1};
use tokio::sync::{Mutex, broadcast};

use crate::store::{Origin, Result, Store};

/// Records buffered per subscriber before it is told it lagged (it then reads the store).
const FEED_CAPACITY: usize = 4096;

pub struct Feed {
    store: Arc<Store>,
    live: broadcast::Sender<Arc<v1::FindingRecord>>,
    publish_order: Mutex<()>,
}

impl Feed {
    pub fn new(store: Arc<Store>) -> Self {
        Self {
            store,
            live: broadcast::channel(FEED_CAPACITY).0,
            publish_order: Mutex::new(()),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Stores a batch and publishes what was new; returns the number of new findings.
    pub async fn ingest(&self, origin: &Origin, findings: Vec<model::Finding>) -> Result<usize> {
        let _order = self.publish_order.lock().await;
        let records = self
            .store
            .insert_findings(origin, findings, Timestamp::now())
            .await?;
        let new = records.len();
        for record in records {
            // No receivers is fine: nobody is subscribed right now.
            let _ = self.live.send(Arc::new(record));
        }
        Ok(new)
    }

    /// A receiver of everything published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<v1::FindingRecord>> {
        self.live.subscribe()
    }
}
