//! `AgentService.Report`: one stream per agent. The first message must be a hello; each
//! finding batch after it is validated whole, stored (grouped with other agents' batches,
//! see `feed::writer`), published, then acknowledged once committed (a batch with one
//! malformed finding is refused whole, so nothing is half-applied); each
//! posture snapshot is stored as the node's latest and acknowledged by generation.

use std::{sync::Arc, time::Duration};

use jiff::Timestamp;
use nodeward_proto::{
    model,
    v1::{
        Ack, FindingBatch, Hello, PostureAck, PostureSnapshot, ReportRequest, ReportResponse,
        agent_service_server::AgentService, report_request, report_response,
    },
};
use tokio::{sync::mpsc, time::Instant};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, error, info, warn};

use crate::{
    auth::{Auth, hello_allowed},
    feed::{Feed, IngestError},
    metrics::{AckKind, StreamKind},
    store::{Origin, PostureOutcome},
};

pub struct AgentApi {
    feed: Arc<Feed>,
    tracker: TaskTracker,
    token: CancellationToken,
    /// How often an open stream counts as the node being heard from (see `silence`).
    touch_every: Duration,
    auth: Auth,
}

impl AgentApi {
    pub fn new(
        feed: Arc<Feed>,
        tracker: TaskTracker,
        token: CancellationToken,
        touch_every: Duration,
    ) -> Self {
        Self {
            feed,
            tracker,
            token,
            touch_every,
            auth: Auth::Disabled,
        }
    }

    /// Requires node certificates (with TLS), each reporting only for its own node.
    #[must_use]
    pub fn with_auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }
}

#[tonic::async_trait]
impl AgentService for AgentApi {
    type ReportStream = ReceiverStream<Result<ReportResponse, Status>>;

    async fn report(
        &self,
        request: Request<Streaming<ReportRequest>>,
    ) -> Result<Response<Self::ReportStream>, Status> {
        let allowed = self.auth.agent(&request)?;
        let peer = request
            .remote_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let mut inbound = request.into_inner();
        let Some(ReportRequest {
            kind: Some(report_request::Kind::Hello(hello)),
        }) = inbound.message().await?
        else {
            return Err(Status::invalid_argument(
                "the first message of a Report stream must be a Hello",
            ));
        };
        let origin = origin(hello)?;
        hello_allowed(allowed.as_deref(), &origin.node_name, &peer)?;
        let store_failed = |err: crate::store::StoreError| {
            error!(
                error = format!("{:#}", anyhow::Error::new(err)),
                node = origin.node_name,
                "recording the node failed"
            );
            Status::internal("the collector could not record this node")
        };
        self.feed
            .store()
            .record_hello(&origin, Timestamp::now())
            .await
            .map_err(store_failed)?;
        self.feed
            .seen(&origin.node_name)
            .await
            .map_err(store_failed)?;
        self.feed.metrics().fleet_changed();
        info!(
            node = origin.node_name,
            cluster = origin.cluster,
            agent_version = origin.agent_version,
            stream_id = origin.stream_id,
            peer,
            "agent connected"
        );
        let (responses, rx) = mpsc::channel(16);
        let stream = Stream {
            feed: self.feed.clone(),
            origin,
            responses,
            touch_every: self.touch_every,
            touched: Instant::now(),
        };
        self.tracker
            .spawn(stream.serve(inbound, self.token.clone()));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// The node a Report stream speaks for, from its Hello. This is the one place a
/// stream's identity is decided.
fn origin(hello: Hello) -> Result<Origin, Status> {
    for (field, value) in [
        ("node_name", &hello.node_name),
        ("stream_id", &hello.stream_id),
    ] {
        if value.is_empty() {
            return Err(Status::invalid_argument(format!(
                "Hello.{field} must not be empty"
            )));
        }
    }
    Ok(Origin {
        node_name: hello.node_name,
        stream_id: hello.stream_id,
        boot_id: hello.boot_id,
        agent_version: hello.agent_version,
        cluster: hello.cluster,
    })
}

/// One agent's open Report stream.
struct Stream {
    feed: Arc<Feed>,
    origin: Origin,
    responses: mpsc::Sender<Result<ReportResponse, Status>>,
    touch_every: Duration,
    /// When the node was last recorded as heard from.
    touched: Instant,
}

impl Stream {
    async fn serve(mut self, mut inbound: Streaming<ReportRequest>, token: CancellationToken) {
        let _open = self.feed.metrics().stream_open(StreamKind::Agent);
        loop {
            let message = tokio::select! {
                () = token.cancelled() => {
                    let _ = self.responses.send(Err(Status::unavailable("the collector is shutting down"))).await;
                    return;
                }
                () = tokio::time::sleep_until(self.touched + self.touch_every) => {
                    // Idle but connected: still reporting.
                    self.touch().await;
                    continue;
                }
                message = inbound.message() => message,
            };
            let reply = match message {
                Ok(Some(ReportRequest { kind: Some(kind) })) => {
                    if self.touched.elapsed() >= self.touch_every {
                        self.touch().await;
                    }
                    self.handle(kind).await
                }
                Ok(Some(ReportRequest { kind: None })) => {
                    Err(Status::invalid_argument("empty ReportRequest"))
                }
                Ok(None) => {
                    info!(node = self.origin.node_name, "agent disconnected");
                    return;
                }
                Err(status) => {
                    // A message that cannot be decoded or is too large: the agent is told
                    // why (if it still listens) and only this stream ends.
                    warn!(node = self.origin.node_name, %status, "agent stream failed");
                    let _ = self.responses.send(Err(status)).await;
                    return;
                }
            };
            let failed = reply.is_err();
            if self.responses.send(reply).await.is_err() || failed {
                return;
            }
        }
    }

    async fn handle(&self, kind: report_request::Kind) -> Result<ReportResponse, Status> {
        match kind {
            report_request::Kind::Findings(batch) => {
                let reply = ingest(&self.feed, &self.origin, batch).await;
                if reply.is_ok() {
                    self.feed.metrics().ack_sent(AckKind::Findings);
                }
                reply
            }
            report_request::Kind::Posture(snapshot) => {
                let reply = self.posture(snapshot).await;
                if reply.is_ok() {
                    self.feed.metrics().ack_sent(AckKind::Posture);
                }
                reply
            }
            report_request::Kind::Hello(_) => Err(Status::invalid_argument(
                "a Report stream has one Hello, at its start",
            )),
        }
    }

    /// Records the node as heard from. A failure only delays that, so it is logged and
    /// the stream goes on; it is tried again one interval later (not at once, which
    /// would hammer a store in trouble).
    async fn touch(&mut self) {
        self.touched = Instant::now();
        if let Err(err) = self.feed.seen(&self.origin.node_name).await {
            warn!(
                error = format!("{:#}", anyhow::Error::new(err)),
                node = self.origin.node_name,
                "recording that the node reported failed"
            );
        }
    }

    async fn posture(&self, wire: PostureSnapshot) -> Result<ReportResponse, Status> {
        let snapshot = model::PostureSnapshot::try_from(wire)
            .map_err(|err| Status::invalid_argument(format!("posture snapshot: {err}")))?;
        let generation = snapshot.generation;
        let outcome = self
            .feed
            .store()
            .store_posture(
                &self.origin.node_name,
                &self.origin.stream_id,
                &snapshot,
                Timestamp::now(),
            )
            .await
            .map_err(|err| {
                error!(
                    error = format!("{:#}", anyhow::Error::new(err)),
                    node = self.origin.node_name,
                    "storing posture failed"
                );
                Status::internal("the collector could not store the posture snapshot")
            })?;
        match outcome {
            PostureOutcome::Stored => {
                info!(
                    node = self.origin.node_name,
                    generation,
                    failing = snapshot.failing().count(),
                    "posture stored"
                );
                self.feed.metrics().fleet_changed();
            }
            // Acknowledged all the same: the agent has nothing better to send.
            PostureOutcome::Stale => debug!(
                node = self.origin.node_name,
                generation, "older posture snapshot ignored"
            ),
        }
        Ok(ReportResponse {
            kind: Some(report_response::Kind::PostureAck(PostureAck { generation })),
        })
    }
}

async fn ingest(
    feed: &Feed,
    origin: &Origin,
    batch: FindingBatch,
) -> Result<ReportResponse, Status> {
    let mut findings = Vec::with_capacity(batch.findings.len());
    for wire in batch.findings {
        let seq = wire.seq;
        if seq == 0 {
            return Err(Status::invalid_argument(
                "finding sequence numbers start at 1",
            ));
        }
        let finding = model::Finding::try_from(wire)
            .map_err(|err| Status::invalid_argument(format!("finding seq {seq}: {err}")))?;
        findings.push(finding);
    }
    let Some(last) = findings.iter().map(|f| f.seq).max() else {
        return Err(Status::invalid_argument("empty finding batch"));
    };
    let new = feed
        .ingest(origin, findings)
        .await
        .map_err(|err| match err {
            IngestError::Stopped => Status::unavailable("the collector is shutting down"),
            IngestError::Store(err) => {
                error!(
                    error = format!("{:#}", anyhow::Error::new(err)),
                    node = origin.node_name,
                    "storing findings failed"
                );
                Status::internal("the collector could not store the findings")
            }
        })?;
    info!(
        node = origin.node_name,
        acked = last,
        new,
        "findings stored"
    );
    Ok(ReportResponse {
        kind: Some(report_response::Kind::Ack(Ack { seq: last })),
    })
}
