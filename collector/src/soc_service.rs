//! `SocService.Subscribe`: the SOC's live feed. With a cursor it first replays what was
//! stored after it, then continues live; a subscriber that falls behind the live feed
//! catches up from the store. Either way it never skips or repeats a finding.

use std::sync::Arc;

use nodeward_proto::v1::{FindingRecord, SubscribeRequest, soc_service_server::SocService};
use tokio::sync::{broadcast::error::RecvError, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tonic::{Request, Response, Status};
use tracing::{debug, error};

use crate::feed::Feed;

/// Response metadata carrying the cursor the stream starts after, so a client that
/// subscribed "from now" can resume from the right place.
pub const CURSOR_METADATA: &str = "nodeward-cursor";

/// Records read from the store per query while replaying.
const PAGE: u32 = 500;

pub struct SocApi {
    feed: Arc<Feed>,
    tracker: TaskTracker,
    token: CancellationToken,
}

impl SocApi {
    pub fn new(feed: Arc<Feed>, tracker: TaskTracker, token: CancellationToken) -> Self {
        Self {
            feed,
            tracker,
            token,
        }
    }
}

type Outbound = mpsc::Sender<Result<FindingRecord, Status>>;

#[tonic::async_trait]
impl SocService for SocApi {
    type SubscribeStream = ReceiverStream<Result<FindingRecord, Status>>;

    async fn subscribe(
        &self,
        request: Request<SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        // Subscribe to the live feed before reading the store, so nothing published in
        // between is missed.
        let live = self.feed.subscribe();
        let cursor = match request.into_inner().after_id {
            Some(id) => id,
            None => self
                .feed
                .store()
                .last_id()
                .await
                .map_err(|e| internal(&e))?,
        };
        let (tx, rx) = mpsc::channel(64);
        let (feed, token) = (self.feed.clone(), self.token.clone());
        self.tracker.spawn(async move {
            if let Err(status) = stream(&feed, live, cursor, &tx, &token).await {
                let _ = tx.send(Err(status)).await;
            }
        });
        let mut response = Response::new(ReceiverStream::new(rx));
        response
            .metadata_mut()
            .insert(CURSOR_METADATA, cursor.into());
        Ok(response)
    }
}

async fn stream(
    feed: &Feed,
    mut live: tokio::sync::broadcast::Receiver<Arc<FindingRecord>>,
    mut cursor: u64,
    tx: &Outbound,
    token: &CancellationToken,
) -> Result<(), Status> {
    if !replay(feed, &mut cursor, tx).await? {
        return Ok(());
    }
    loop {
        let record = tokio::select! {
            () = token.cancelled() => return Err(Status::unavailable("the collector is shutting down")),
            record = live.recv() => record,
        };
        match record {
            Ok(record) if record.id > cursor => {
                cursor = record.id;
                if tx.send(Ok(FindingRecord::clone(&record))).await.is_err() {
                    return Ok(());
                }
            }
            Ok(_) => {}
            Err(RecvError::Lagged(skipped)) => {
                debug!(
                    skipped,
                    cursor, "subscriber fell behind; catching up from the store"
                );
                if !replay(feed, &mut cursor, tx).await? {
                    return Ok(());
                }
            }
            Err(RecvError::Closed) => return Ok(()),
        }
    }
}

/// Sends every stored record after `cursor`; `false` when the subscriber has gone.
async fn replay(feed: &Feed, cursor: &mut u64, tx: &Outbound) -> Result<bool, Status> {
    loop {
        let page = feed
            .store()
            .findings_after(*cursor, PAGE)
            .await
            .map_err(|e| internal(&e))?;
        let Some(last) = page.last().map(|r| r.id) else {
            return Ok(true);
        };
        for record in page {
            if tx.send(Ok(record)).await.is_err() {
                return Ok(false);
            }
        }
        *cursor = last;
    }
}

fn internal(err: &crate::store::StoreError) -> Status {
    error!(error = format!("{err:#}"), "reading findings failed");
    Status::internal("the collector could not read its findings")
}
