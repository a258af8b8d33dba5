//! The live feed of a store that several collectors share (PostgreSQL): every record
//! any of them stores, read back from the store in feed order and published here.
//!
//! Feed positions become visible in order (see `store::postgres::insert`), so reading
//! "everything after the last published position" never skips one. The tail is woken by
//! this collector's commits, by PostgreSQL notifications from every replica's commits,
//! and by a timer, which also covers notifications lost while the listener reconnects.

use std::{sync::Arc, time::Duration};

use nodeward_proto::v1;
use tokio::sync::{Mutex, Notify, broadcast};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::store::{Result, Store};

/// Read the store at least this often, notification or not.
const POLL: Duration = Duration::from_secs(1);
/// After the listener failed, try again this much later (reads go on by [`POLL`]).
const LISTEN_RETRY: Duration = Duration::from_secs(5);
/// Records read per query.
const PAGE: u32 = 1000;

pub struct Tail {
    store: Arc<Store>,
    live: broadcast::Sender<Arc<v1::FindingRecord>>,
    /// The last position published; `None` until the tail has started.
    position: Mutex<Option<u64>>,
    wake: Notify,
}

impl Tail {
    pub fn new(store: Arc<Store>, live: broadcast::Sender<Arc<v1::FindingRecord>>) -> Self {
        Self {
            store,
            live,
            position: Mutex::new(None),
            wake: Notify::new(),
        }
    }

    /// Asks for a read of the store; wakes coalesce.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Fixes where publication starts (the last stored position), if not done yet.
    pub async fn start(&self) -> Result<()> {
        let mut position = self.position.lock().await;
        if position.is_none() {
            *position = Some(self.store.last_id().await?);
        }
        Ok(())
    }

    /// Publishes every record stored after the last one published.
    async fn catch_up(&self) -> Result<()> {
        let mut position = self.position.lock().await;
        let Some(mut after) = *position else {
            // Nobody subscribed yet: start from here.
            *position = Some(self.store.last_id().await?);
            return Ok(());
        };
        loop {
            let records = self.store.findings_after(after, PAGE).await?;
            let full = records.len() == PAGE as usize;
            for record in records {
                after = record.id;
                *position = Some(after);
                // No receivers is fine: nobody is subscribed right now.
                let _ = self.live.send(Arc::new(record));
            }
            if !full {
                return Ok(());
            }
        }
    }
}

/// Publishes what is stored, whenever woken or every [`POLL`], until cancelled.
pub async fn run(tail: Arc<Tail>, token: CancellationToken) {
    loop {
        if let Err(err) = tail.catch_up().await {
            // Subscribers wait a little longer; the next round reads from where it was.
            warn!(
                error = format!("{:#}", anyhow::Error::new(err)),
                "reading new findings for the live feed failed"
            );
        }
        tokio::select! {
            () = token.cancelled() => return,
            () = tail.wake.notified() => {}
            () = tokio::time::sleep(POLL) => {}
        }
    }
}

/// Wakes the tail on every notification that a collector stored findings, until
/// cancelled.
pub async fn listen(store: Arc<Store>, tail: Arc<Tail>, token: CancellationToken) {
    loop {
        let listener = tokio::select! {
            () = token.cancelled() => return,
            listener = store.listen_findings() => listener,
        };
        let mut listener = match listener {
            Ok(Some(listener)) => listener,
            Ok(None) => return,
            Err(err) => {
                warn!(
                    error = format!("{:#}", anyhow::Error::new(err)),
                    retry_in = ?LISTEN_RETRY,
                    "listening for other collectors' findings failed; polling meanwhile"
                );
                tokio::select! {
                    () = token.cancelled() => return,
                    () = tokio::time::sleep(LISTEN_RETRY) => continue,
                }
            }
        };
        debug!("listening for findings stored by every collector");
        // Anything stored before the listener was up.
        tail.wake();
        loop {
            let next = tokio::select! {
                () = token.cancelled() => return,
                next = listener.next() => next,
            };
            match next {
                Ok(()) => tail.wake(),
                Err(err) => {
                    warn!(
                        error = format!("{:#}", anyhow::Error::new(err)),
                        "the listener for other collectors' findings failed"
                    );
                    break;
                }
            }
        }
    }
}
