//! `AgentService.Report`: one stream per agent. The first message must be a hello; each
//! batch after it is validated whole, stored, published, then acknowledged. A batch with
//! one malformed finding is refused whole, so nothing is half-applied.

use std::sync::Arc;

use jiff::Timestamp;
use nodeward_proto::{
    model,
    v1::{
        Ack, FindingBatch, Hello, ReportRequest, ReportResponse,
        agent_service_server::AgentService, report_request, report_response,
    },
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tonic::{Request, Response, Status, Streaming};
use tracing::{error, info, warn};

use crate::{feed::Feed, store::Origin};

pub struct AgentApi {
    feed: Arc<Feed>,
    tracker: TaskTracker,
    token: CancellationToken,
}

impl AgentApi {
    pub fn new(feed: Arc<Feed>, tracker: TaskTracker, token: CancellationToken) -> Self {
        Self {
            feed,
            tracker,
            token,
        }
    }
}

#[tonic::async_trait]
impl AgentService for AgentApi {
    type ReportStream = ReceiverStream<Result<ReportResponse, Status>>;

    async fn report(
        &self,
        request: Request<Streaming<ReportRequest>>,
    ) -> Result<Response<Self::ReportStream>, Status> {
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
        self.feed
            .store()
            .upsert_node(&origin, Timestamp::now())
            .await
            .map_err(|err| {
                error!(
                    error = format!("{err:#}"),
                    node = origin.node_name,
                    "recording the node failed"
                );
                Status::internal("the collector could not record this node")
            })?;
        info!(
            node = origin.node_name,
            agent_version = origin.agent_version,
            stream_id = origin.stream_id,
            peer,
            "agent connected"
        );
        let (responses, rx) = mpsc::channel(16);
        self.tracker.spawn(serve_stream(
            self.feed.clone(),
            origin,
            inbound,
            responses,
            self.token.clone(),
        ));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

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
    })
}

async fn serve_stream(
    feed: Arc<Feed>,
    origin: Origin,
    mut inbound: Streaming<ReportRequest>,
    responses: mpsc::Sender<Result<ReportResponse, Status>>,
    token: CancellationToken,
) {
    loop {
        let message = tokio::select! {
            () = token.cancelled() => {
                let _ = responses.send(Err(Status::unavailable("the collector is shutting down"))).await;
                return;
            }
            message = inbound.message() => message,
        };
        let reply = match message {
            Ok(Some(ReportRequest {
                kind: Some(report_request::Kind::Findings(batch)),
            })) => ingest(&feed, &origin, batch).await,
            Ok(Some(_)) => Err(Status::invalid_argument(
                "only finding batches may follow the Hello",
            )),
            Ok(None) => {
                info!(node = origin.node_name, "agent disconnected");
                return;
            }
            Err(status) => {
                warn!(node = origin.node_name, %status, "agent stream failed");
                return;
            }
        };
        let failed = reply.is_err();
        if responses.send(reply).await.is_err() || failed {
            return;
        }
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
    let new = feed.ingest(origin, findings).await.map_err(|err| {
        error!(
            error = format!("{err:#}"),
            node = origin.node_name,
            "storing findings failed"
        );
        Status::internal("the collector could not store the findings")
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
