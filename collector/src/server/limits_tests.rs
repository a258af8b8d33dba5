//! Messages the collector must refuse without falling over: one larger than
//! [`MAX_MESSAGE_BYTES`], and bytes that are not a protobuf message at all. Each ends its
//! own stream with an error; other agents, on the same connection or another, carry on.

use std::time::Duration;

use bytes::{Buf as _, BufMut as _};
use nodeward_proto::v1::{ReportRequest, ReportResponse};
use prost::Message as _;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{
    Code, Status, Streaming,
    codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
    transport::Channel,
};

use super::MAX_MESSAGE_BYTES;
use super::tests::{Running, batch, finding, hello, next_ack, report};

/// The status that ends `responses`, within 5 s.
async fn ended_with(responses: &mut Streaming<ReportResponse>) -> Status {
    tokio::time::timeout(Duration::from_secs(5), responses.message())
        .await
        .expect("the stream ends within 5 s")
        .expect_err("the stream ends with an error")
}

/// Another agent reports a finding over `channel` and has it acknowledged.
async fn another_agent_reports(channel: &Channel, node: &str) {
    let (tx, mut acks) = report(channel, hello(node)).await.unwrap();
    tx.send(batch(vec![finding(1)])).await.unwrap();
    assert_eq!(next_ack(&mut acks).await, 1, "{node} is still served");
}

async fn second_connection(collector: &Running) -> Channel {
    let uri = collector.channel_uri();
    Channel::from_shared(uri).unwrap().connect().await.unwrap()
}

#[tokio::test]
async fn an_oversized_batch_ends_its_stream_and_the_collector_serves_on() {
    let collector = Running::start().await;
    let (tx, mut acks) = report(&collector.channel, hello("node-a")).await.unwrap();
    let mut huge = finding(1);
    huge.description = "x".repeat(5 << 20);
    tx.send(batch(vec![huge])).await.unwrap();
    let status = ended_with(&mut acks).await;
    assert!(
        matches!(status.code(), Code::OutOfRange | Code::ResourceExhausted),
        "{status:?}"
    );
    assert!(
        status.message().contains(&MAX_MESSAGE_BYTES.to_string()),
        "the error names the limit: {}",
        status.message()
    );

    // The same connection and a new one both still work.
    another_agent_reports(&collector.channel, "node-b").await;
    another_agent_reports(&second_connection(&collector).await, "node-c").await;
    // A batch just under the limit is fine.
    let (tx, mut acks) = report(&collector.channel, hello("node-d")).await.unwrap();
    let mut large = finding(1);
    large.description = "x".repeat(MAX_MESSAGE_BYTES - 4096);
    tx.send(batch(vec![large])).await.unwrap();
    assert_eq!(next_ack(&mut acks).await, 1);
    drop((tx, acks));
    collector.stop().await;
}

/// Sends and receives raw message bytes, so a test can put anything on the wire.
#[derive(Debug, Clone, Copy, Default)]
struct Raw;

impl Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;

    fn encoder(&mut self) -> Raw {
        Raw
    }

    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

#[tokio::test]
async fn bytes_that_are_not_a_report_end_the_stream_and_the_collector_serves_on() {
    let collector = Running::start().await;
    let (tx, rx) = mpsc::channel::<Vec<u8>>(4);
    tx.send(hello("node-a").encode_to_vec()).await.unwrap();
    let mut grpc = tonic::client::Grpc::new(collector.channel.clone());
    grpc.ready().await.unwrap();
    let mut responses = grpc
        .streaming(
            tonic::Request::new(ReceiverStream::new(rx)),
            tonic::codegen::http::uri::PathAndQuery::from_static(
                "/nodeward.v1.AgentService/Report",
            ),
            Raw,
        )
        .await
        .unwrap()
        .into_inner();
    // A field 1 (`hello`) that claims more bytes than follow.
    tx.send(vec![0x0a, 0xff, 0xff, 0x03, 0x01]).await.unwrap();
    let status = tokio::time::timeout(Duration::from_secs(5), responses.message())
        .await
        .expect("the stream ends within 5 s")
        .expect_err("the stream ends with an error");
    assert_eq!(status.code(), Code::Internal, "{status:?}");
    assert!(status.message().contains("decode"), "{}", status.message());
    // Nothing of it was taken as a report.
    assert!(
        ReportRequest::decode(&[0x0a, 0xff, 0xff, 0x03, 0x01][..]).is_err(),
        "the garbage really is undecodable"
    );

    another_agent_reports(&collector.channel, "node-b").await;
    another_agent_reports(&second_connection(&collector).await, "node-c").await;
    drop(tx);
    collector.stop().await;
}
