//! How stored records reach the live feed.
//!
//! With SQLite this collector is the store's only writer: what it commits it publishes
//! itself, and one lock across "store, then publish" keeps publication in id order.
//! With PostgreSQL other replicas write too, and what they commit must reach this
//! replica's subscribers as well: the [`Tail`] reads every record in feed order from the
//! store and publishes it; a commit here only wakes it.

use std::sync::Arc;

use nodeward_proto::v1;
use tokio::sync::{Mutex, MutexGuard, broadcast};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use super::tail::{self, Tail};
use crate::{
    metrics::Metrics,
    store::{Result, Store},
};

/// Records buffered per subscriber before it is told it lagged (it then reads the store).
const FEED_CAPACITY: usize = 4096;

pub struct Publisher {
    live: broadcast::Sender<Arc<v1::FindingRecord>>,
    metrics: Arc<Metrics>,
    mode: Mode,
}

enum Mode {
    /// Held across "store, then publish" (SQLite).
    Direct(Mutex<()>),
    /// The store is shared; the tail publishes (PostgreSQL).
    Tailed(Arc<Tail>),
}

impl Publisher {
    /// For a shared store, starts the tail and its listener on `tracker`.
    pub fn start(
        store: Arc<Store>,
        metrics: Arc<Metrics>,
        tracker: &TaskTracker,
        token: &CancellationToken,
    ) -> Self {
        let live = broadcast::channel(FEED_CAPACITY).0;
        let mode = if store.is_shared() {
            let tail = Arc::new(Tail::new(store.clone(), live.clone()));
            tracker.spawn(tail::run(tail.clone(), token.clone()));
            tracker.spawn(tail::listen(store, tail.clone(), token.clone()));
            Mode::Tailed(tail)
        } else {
            Mode::Direct(Mutex::new(()))
        };
        Self {
            live,
            metrics,
            mode,
        }
    }

    /// Held while storing and publishing, so that records are published in id order;
    /// `None` when the tail orders them instead.
    pub async fn order(&self) -> Option<MutexGuard<'_, ()>> {
        match &self.mode {
            Mode::Direct(order) => Some(order.lock().await),
            Mode::Tailed(_) => None,
        }
    }

    /// Records committed by this collector: counted, and published (directly, or by
    /// waking the tail). The caller holds [`Publisher::order`].
    pub fn stored(&self, records: impl IntoIterator<Item = v1::FindingRecord>) {
        let mut any = false;
        for record in records {
            any = true;
            self.metrics.finding_stored(&record);
            if let Mode::Direct(_) = self.mode {
                // No receivers is fine: nobody is subscribed right now.
                let _ = self.live.send(Arc::new(record));
            }
        }
        if let (Mode::Tailed(tail), true) = (&self.mode, any) {
            tail.wake();
        }
    }

    /// A receiver of everything published from now on.
    pub async fn subscribe(&self) -> Result<broadcast::Receiver<Arc<v1::FindingRecord>>> {
        if let Mode::Tailed(tail) = &self.mode {
            // The tail must know where it starts before anyone relies on it: records at
            // or below that start are never published, only replayed from the store.
            tail.start().await?;
        }
        Ok(self.live.subscribe())
    }
}
