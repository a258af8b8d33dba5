//! The collector over a real loopback socket: agents' streams, the SOC feed and health.

use std::time::Duration;

use jiff::Timestamp;
use nodeward_proto::{
    model::{self, Severity},
    v1::{
        FindingBatch, FindingRecord, Hello, ReportRequest, ReportResponse, SubscribeRequest,
        agent_service_client::AgentServiceClient, report_request, report_response,
        soc_service_client::SocServiceClient,
    },
};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Streaming, transport::Channel};

use super::*;
use crate::soc_service::CURSOR_METADATA;

pub(super) struct Running {
    pub channel: Channel,
    /// `http://<addr>` of the gRPC listener.
    uri: String,
    /// `/metrics`, `/healthz`, `/readyz`.
    pub http: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
}

impl Running {
    pub async fn start() -> Self {
        Self::start_with(|collector| collector).await
    }

    /// Starts a collector on loopback, after `configure` had its say.
    pub async fn start_with(configure: impl FnOnce(Collector) -> Collector) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("c.db")).await.unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http_addr = http.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let collector = configure(Collector::new(store).http(http));
        let done = tokio::spawn(collector.serve(listener, async {
            let _ = stopped.await;
        }));
        let uri = format!("http://{addr}");
        let channel = Channel::from_shared(uri.clone())
            .unwrap()
            .connect()
            .await
            .unwrap();
        Self {
            channel,
            uri,
            http: http_addr,
            stop: Some(stop),
            done,
            _dir: dir,
        }
    }

    /// Where a second connection goes.
    pub fn channel_uri(&self) -> String {
        self.uri.clone()
    }

    pub fn soc(&self) -> SocServiceClient<Channel> {
        SocServiceClient::new(self.channel.clone())
    }

    pub async fn stop(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), self.done)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}

pub(super) fn finding(seq: u64) -> nodeward_proto::v1::Finding {
    let summary = format!("attempt {seq}");
    model::Finding {
        seq,
        ..model::Finding::new("imds-access", Severity::High, summary, Timestamp::now())
    }
    .into()
}

pub(super) fn hello(node: &str) -> ReportRequest {
    ReportRequest {
        kind: Some(report_request::Kind::Hello(Hello {
            node_name: node.into(),
            agent_version: "test".into(),
            boot_id: "boot".into(),
            stream_id: "stream".into(),
            cluster: "test".into(),
        })),
    }
}

pub(super) fn batch(findings: Vec<nodeward_proto::v1::Finding>) -> ReportRequest {
    ReportRequest {
        kind: Some(report_request::Kind::Findings(FindingBatch { findings })),
    }
}

/// Opens a Report stream and sends `first`; returns the sender and the responses.
pub(super) async fn report(
    channel: &Channel,
    first: ReportRequest,
) -> Result<(mpsc::Sender<ReportRequest>, Streaming<ReportResponse>), tonic::Status> {
    let (tx, rx) = mpsc::channel(8);
    tx.send(first).await.unwrap();
    let responses = AgentServiceClient::new(channel.clone())
        .report(ReceiverStream::new(rx))
        .await?
        .into_inner();
    Ok((tx, responses))
}

pub(super) async fn next_ack(responses: &mut Streaming<ReportResponse>) -> u64 {
    let response = tokio::time::timeout(Duration::from_secs(5), responses.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    match response.kind {
        Some(report_response::Kind::Ack(ack)) => ack.seq,
        other => panic!("expected a findings ack, got {other:?}"),
    }
}

pub(super) async fn next_record(feed: &mut Streaming<FindingRecord>) -> FindingRecord {
    tokio::time::timeout(Duration::from_secs(5), feed.message())
        .await
        .expect("a record within 5 s")
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn findings_are_acknowledged_stored_once_and_fed_to_the_soc() {
    let collector = Running::start().await;
    let (tx, mut acks) = report(&collector.channel, hello("node-a")).await.unwrap();
    tx.send(batch(vec![finding(1), finding(2)])).await.unwrap();
    assert_eq!(next_ack(&mut acks).await, 2);
    // An agent that reconnects resends what it had not seen acknowledged.
    tx.send(batch(vec![finding(2), finding(3)])).await.unwrap();
    assert_eq!(next_ack(&mut acks).await, 3);

    let mut feed = SocServiceClient::new(collector.channel.clone())
        .subscribe(SubscribeRequest {
            after_id: Some(0),
            ..SubscribeRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    let replayed = [
        next_record(&mut feed).await,
        next_record(&mut feed).await,
        next_record(&mut feed).await,
    ];
    let seqs: Vec<u64> = replayed
        .iter()
        .map(|r| r.finding.as_ref().unwrap().seq)
        .collect();
    assert_eq!(seqs, [1, 2, 3], "each finding once, in order");
    assert!(
        replayed.windows(2).all(|w| w[0].id < w[1].id),
        "ids increase"
    );

    // Live after replay.
    tx.send(batch(vec![finding(4)])).await.unwrap();
    let record = next_record(&mut feed).await;
    assert!(record.id > replayed[2].id);
    assert_eq!(
        (record.finding.unwrap().seq, record.node_name.as_str()),
        (4, "node-a")
    );
    drop(tx);
    collector.stop().await;
}

#[tokio::test]
async fn live_subscription_reports_its_cursor_and_resume_misses_nothing() {
    let collector = Running::start().await;
    let (tx, mut acks) = report(&collector.channel, hello("node-a")).await.unwrap();
    tx.send(batch(vec![finding(1)])).await.unwrap();
    next_ack(&mut acks).await;

    let response = SocServiceClient::new(collector.channel.clone())
        .subscribe(SubscribeRequest::default())
        .await
        .unwrap();
    let cursor: u64 = response
        .metadata()
        .get(CURSOR_METADATA)
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(cursor, 1, "live starts after what was already stored");
    let mut feed = response.into_inner();
    tx.send(batch(vec![finding(2)])).await.unwrap();
    assert_eq!(next_ack(&mut acks).await, 2);
    let last_seen = next_record(&mut feed).await;
    assert_eq!(
        last_seen.finding.unwrap().seq,
        2,
        "only what arrived after subscribing"
    );
    drop(feed);

    // While nobody listens, more arrives; resuming after the last id seen gets exactly that.
    tx.send(batch(vec![finding(3), finding(4)])).await.unwrap();
    assert_eq!(next_ack(&mut acks).await, 4);
    let mut feed = SocServiceClient::new(collector.channel.clone())
        .subscribe(SubscribeRequest {
            after_id: Some(last_seen.id),
            ..SubscribeRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next_record(&mut feed).await.finding.unwrap().seq, 3);
    assert_eq!(next_record(&mut feed).await.finding.unwrap().seq, 4);
    drop(tx);
    collector.stop().await;
}

#[tokio::test]
async fn stream_must_start_with_hello() {
    let collector = Running::start().await;
    let err = report(&collector.channel, batch(vec![finding(1)]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("Hello"), "{}", err.message());

    let mut empty = hello("");
    if let Some(report_request::Kind::Hello(h)) = &mut empty.kind {
        h.node_name.clear();
    }
    let err = report(&collector.channel, empty).await.unwrap_err();
    assert!(err.message().contains("node_name"), "{}", err.message());
    collector.stop().await;
}

#[tokio::test]
async fn a_malformed_finding_refuses_the_whole_batch() {
    let collector = Running::start().await;
    let (tx, mut acks) = report(&collector.channel, hello("node-a")).await.unwrap();
    let mut bad = finding(2);
    bad.severity = 0;
    tx.send(batch(vec![finding(1), bad])).await.unwrap();
    let status = tokio::time::timeout(Duration::from_secs(5), acks.message())
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("seq 2") && status.message().contains("severity"),
        "{}",
        status.message()
    );

    let mut feed = SocServiceClient::new(collector.channel.clone())
        .subscribe(SubscribeRequest {
            after_id: Some(0),
            ..SubscribeRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    let (tx2, mut acks2) = report(&collector.channel, hello("node-b")).await.unwrap();
    tx2.send(batch(vec![finding(1)])).await.unwrap();
    next_ack(&mut acks2).await;
    let record = next_record(&mut feed).await;
    assert_eq!(
        record.node_name, "node-b",
        "nothing of node-a's refused batch was stored"
    );
    drop((tx, tx2));
    collector.stop().await;
}

#[tokio::test]
async fn health_reports_both_services_serving() {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    let collector = Running::start().await;
    for service in ["nodeward.v1.AgentService", "nodeward.v1.SocService"] {
        let status = HealthClient::new(collector.channel.clone())
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service}");
    }
    collector.stop().await;
}

#[tokio::test]
async fn reflection_lists_and_describes_the_services() {
    use prost::Message as _;
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let collector = Running::start().await;
    let ask = |request: MessageRequest| ServerReflectionRequest {
        host: String::new(),
        message_request: Some(request),
    };
    let mut responses = ServerReflectionClient::new(collector.channel.clone())
        .server_reflection_info(tokio_stream::iter([
            ask(MessageRequest::ListServices(String::new())),
            ask(MessageRequest::FileContainingSymbol(
                "nodeward.v1.SocService".into(),
            )),
        ]))
        .await
        .unwrap()
        .into_inner();

    let listed = responses.message().await.unwrap().unwrap().message_response;
    let Some(MessageResponse::ListServicesResponse(listed)) = listed else {
        panic!("expected the list of services, got {listed:?}");
    };
    let mut names: Vec<String> = listed.service.into_iter().map(|s| s.name).collect();
    names.sort();
    // Reflection describes the whole nodeward.v1 package, enrollment included, whether or
    // not this collector has it on.
    assert_eq!(
        names,
        [
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "nodeward.v1.AgentEnrollmentService",
            "nodeward.v1.AgentService",
            "nodeward.v1.SocService"
        ]
    );

    let file = responses.message().await.unwrap().unwrap().message_response;
    let Some(MessageResponse::FileDescriptorResponse(file)) = file else {
        panic!("expected a file descriptor, got {file:?}");
    };
    let described = file
        .file_descriptor_proto
        .iter()
        .map(|bytes| prost_types::FileDescriptorProto::decode(bytes.as_slice()).unwrap())
        .find(|f| f.service.iter().any(|s| s.name() == "SocService"))
        .expect("the file that declares SocService");
    assert_eq!(described.package(), "nodeward.v1");
    collector.stop().await;
}
