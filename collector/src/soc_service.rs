//! `SocService`: what the SOC and platform teams read.
//!
//! `Subscribe` is the live feed. With a cursor it first replays what was stored after
//! it, then continues live; a subscriber that falls behind the live feed catches up from
//! the store. Either way it never skips or repeats a finding, and its filter applies to
//! both parts, so resuming with a filter misses nothing that matches.

use std::sync::Arc;

use nodeward_proto::{
    model,
    v1::{
        self, FindingRecord, FleetPosture, GetFleetPostureRequest, GetNodePostureRequest,
        ListFindingsRequest, ListFindingsResponse, ListNodesRequest, ListNodesResponse,
        NodePosture, SubscribeRequest, soc_service_server::SocService,
    },
};
use tokio::sync::{broadcast::error::RecvError, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tonic::{Request, Response, Status};
use tracing::{debug, error};

use crate::{auth::Auth, feed::Feed, metrics::StreamKind, store};

mod convert;

/// Response metadata carrying the cursor the stream starts after, so a client that
/// subscribed "from now" can resume from the right place.
pub const CURSOR_METADATA: &str = "nodeward-cursor";

/// Records read from the store per query while replaying.
const PAGE: u32 = 500;
/// `ListFindings` page size when the request leaves it at 0.
pub const DEFAULT_PAGE_SIZE: u32 = 100;
/// The largest `ListFindings` page.
pub const MAX_PAGE_SIZE: u32 = 1000;

pub struct SocApi {
    feed: Arc<Feed>,
    tracker: TaskTracker,
    token: CancellationToken,
    auth: Auth,
}

impl SocApi {
    pub fn new(feed: Arc<Feed>, tracker: TaskTracker, token: CancellationToken) -> Self {
        Self {
            feed,
            tracker,
            token,
            auth: Auth::Disabled,
        }
    }

    /// Requires SOC client certificates (with TLS).
    #[must_use]
    pub fn with_auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
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
        self.auth.soc(&request)?;
        let request = request.into_inner();
        let filter = filter(request.filter)?;
        // Subscribe to the live feed before reading the store, so nothing published in
        // between is missed.
        let live = self.feed.subscribe().await.map_err(internal)?;
        let cursor = match request.after_id {
            Some(id) => id,
            None => self.feed.store().last_id().await.map_err(internal)?,
        };
        let (tx, rx) = mpsc::channel(64);
        let (feed, token) = (self.feed.clone(), self.token.clone());
        self.tracker.spawn(async move {
            let _open = feed.metrics().stream_open(StreamKind::Soc);
            if let Err(status) = stream(&feed, live, cursor, &filter, &tx, &token).await {
                let _ = tx.send(Err(status)).await;
            }
        });
        let mut response = Response::new(ReceiverStream::new(rx));
        response
            .metadata_mut()
            .insert(CURSOR_METADATA, cursor.into());
        Ok(response)
    }

    async fn list_findings(
        &self,
        request: Request<ListFindingsRequest>,
    ) -> Result<Response<ListFindingsResponse>, Status> {
        self.auth.soc(&request)?;
        let request = request.into_inner();
        let filter = filter(request.filter)?;
        let size = match request.page_size {
            0 => DEFAULT_PAGE_SIZE,
            n => n.min(MAX_PAGE_SIZE),
        };
        let page = self
            .feed
            .store()
            .findings_page(&filter, request.after_id, size)
            .await
            .map_err(internal)?;
        let next_after_id = match page.records.last() {
            Some(last) if page.more => last.id,
            _ => 0,
        };
        Ok(Response::new(ListFindingsResponse {
            findings: page.records,
            next_after_id,
        }))
    }

    async fn list_nodes(
        &self,
        request: Request<ListNodesRequest>,
    ) -> Result<Response<ListNodesResponse>, Status> {
        self.auth.soc(&request)?;
        let nodes = self.feed.store().list_nodes().await.map_err(internal)?;
        Ok(Response::new(ListNodesResponse {
            nodes: nodes.into_iter().map(convert::node_summary).collect(),
        }))
    }

    async fn get_node_posture(
        &self,
        request: Request<GetNodePostureRequest>,
    ) -> Result<Response<NodePosture>, Status> {
        self.auth.soc(&request)?;
        let name = request.into_inner().node_name;
        let node = self
            .feed
            .store()
            .node(&name)
            .await
            .map_err(internal)?
            .ok_or_else(|| Status::not_found(format!("no node named {name:?} has reported")))?;
        Ok(Response::new(convert::node_posture(node)))
    }

    async fn get_fleet_posture(
        &self,
        request: Request<GetFleetPostureRequest>,
    ) -> Result<Response<FleetPosture>, Status> {
        self.auth.soc(&request)?;
        let fleet = self.feed.store().fleet_posture().await.map_err(internal)?;
        Ok(Response::new(convert::fleet_posture(fleet)))
    }
}

/// The request's filter; an absent one lets everything through.
fn filter(wire: Option<v1::FindingFilter>) -> Result<model::FindingFilter, Status> {
    wire.map_or_else(
        || Ok(model::FindingFilter::default()),
        |wire| {
            model::FindingFilter::try_from(wire)
                .map_err(|err| Status::invalid_argument(format!("invalid filter: {err}")))
        },
    )
}

async fn stream(
    feed: &Feed,
    mut live: tokio::sync::broadcast::Receiver<Arc<FindingRecord>>,
    mut cursor: u64,
    filter: &model::FindingFilter,
    tx: &Outbound,
    token: &CancellationToken,
) -> Result<(), Status> {
    if !replay(feed, &mut cursor, filter, tx).await? {
        return Ok(());
    }
    loop {
        let record = tokio::select! {
            () = token.cancelled() => return Err(Status::unavailable("the collector is shutting down")),
            record = live.recv() => record,
        };
        match record {
            Ok(record) if record.id > cursor => {
                // Whatever the filter says, the cursor moves: the replay of a lagging
                // subscriber then starts after what it has already been offered.
                cursor = record.id;
                if (filter.is_empty() || store::matches(filter, &record))
                    && tx.send(Ok(FindingRecord::clone(&record))).await.is_err()
                {
                    return Ok(());
                }
            }
            Ok(_) => {}
            Err(RecvError::Lagged(skipped)) => {
                debug!(
                    skipped,
                    cursor, "subscriber fell behind; catching up from the store"
                );
                if !replay(feed, &mut cursor, filter, tx).await? {
                    return Ok(());
                }
            }
            Err(RecvError::Closed) => return Ok(()),
        }
    }
}

/// Sends every stored record after `cursor` that matches `filter`; `false` when the
/// subscriber has gone.
async fn replay(
    feed: &Feed,
    cursor: &mut u64,
    filter: &model::FindingFilter,
    tx: &Outbound,
) -> Result<bool, Status> {
    loop {
        let page = feed
            .store()
            .findings_page(filter, *cursor, PAGE)
            .await
            .map_err(internal)?;
        let Some(last) = page.records.last().map(|r| r.id) else {
            return Ok(true);
        };
        for record in page.records {
            if tx.send(Ok(record)).await.is_err() {
                return Ok(false);
            }
        }
        *cursor = last;
        if !page.more {
            return Ok(true);
        }
    }
}

fn internal(err: store::StoreError) -> Status {
    // anyhow's alternate form prints the whole chain, down to SQLite's own message.
    error!(
        error = format!("{:#}", anyhow::Error::new(err)),
        "reading the store failed"
    );
    Status::internal("the collector could not read its store")
}
