//! The one gRPC stream to the collector: hello, then findings from the outbox in order
//! and the latest posture snapshot; acknowledgements delete them from the outbox. On any
//! failure the stream is rebuilt after a jittered backoff and everything not yet
//! acknowledged is sent again. With `tls: mutual` the certificate files are read again at
//! every connect, so a renewed certificate is used without a restart.

use std::{sync::Arc, time::Duration};

use anyhow::{Context as _, bail};
use nodeward_proto::v1::{
    FindingBatch, Hello, ReportRequest, agent_service_client::AgentServiceClient, report_request,
    report_response,
};
use nodeward_runtime::tls::TlsFiles;
use tokio::sync::{Notify, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};
use tracing::{debug, info, warn};

use crate::{backoff::Backoff, findings, metrics::Metrics, outbox::Outbox};

/// Findings per message.
const BATCH: usize = 256;
/// Findings sent but not yet acknowledged before the agent waits for acks.
const MAX_IN_FLIGHT: u64 = 4 * BATCH as u64;

/// Who this agent is, for the hello.
#[derive(Debug, Clone)]
pub struct Identity {
    pub node_name: String,
    pub cluster: String,
    pub boot_id: String,
    pub agent_version: String,
}

/// Where and how to reach the collector.
#[derive(Debug, Clone)]
pub struct Link {
    pub endpoint: String,
    pub tls: Option<TlsFiles>,
    /// Rung when new certificate files were written (enrollment): a stream waiting to
    /// reconnect tries at once rather than at the end of its backoff.
    pub certificates_changed: Arc<Notify>,
}

/// Runs until `token` is cancelled.
pub async fn run(
    link: Link,
    identity: Identity,
    outbox: Outbox,
    metrics: Arc<Metrics>,
    token: CancellationToken,
) -> anyhow::Result<()> {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
    loop {
        match session(&link, &identity, &outbox, &metrics, &token, &mut backoff).await {
            Ok(()) => return Ok(()),
            Err(err) => {
                metrics.reconnect();
                warn!(
                    endpoint = link.endpoint,
                    error = format!("{err:#}"),
                    "collector stream down"
                );
            }
        }
        let delay = backoff.next_delay();
        debug!(
            delay_ms = delay.as_millis(),
            "reconnecting to the collector"
        );
        tokio::select! {
            () = token.cancelled() => return Ok(()),
            () = tokio::time::sleep(delay) => {}
            () = link.certificates_changed.notified() => {
                debug!("new certificate files: reconnecting now");
            }
        }
    }
}

/// One connection's life. `Ok` only when cancelled.
async fn session(
    link: &Link,
    identity: &Identity,
    outbox: &Outbox,
    metrics: &Metrics,
    token: &CancellationToken,
    backoff: &mut Backoff,
) -> anyhow::Result<()> {
    let endpoint = link.endpoint.as_str();
    let mut channel = Endpoint::from_shared(endpoint.to_owned())
        .with_context(|| format!("collector endpoint {endpoint:?}"))?;
    if let Some(files) = &link.tls {
        let pem = files.read()?;
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&pem.ca))
            .identity(tonic::transport::Identity::from_pem(&pem.cert, &pem.key));
        channel = channel
            .tls_config(tls)
            .context("collector TLS configuration")?;
    }
    let channel = channel
        .connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10))
        .connect()
        .await
        .context("connecting")?;
    let (requests, rx) = mpsc::channel(4);
    requests
        .send(ReportRequest {
            kind: Some(report_request::Kind::Hello(Hello {
                node_name: identity.node_name.clone(),
                agent_version: identity.agent_version.clone(),
                boot_id: identity.boot_id.clone(),
                stream_id: outbox.stream_id().to_owned(),
                cluster: identity.cluster.clone(),
            })),
        })
        .await?;
    let mut responses = AgentServiceClient::new(channel)
        .report(ReceiverStream::new(rx))
        .await
        .context("opening the report stream")?
        .into_inner();
    info!(
        endpoint,
        stream_id = outbox.stream_id(),
        "reporting to the collector"
    );
    backoff.reset();
    // What the bound dropped while the link was down is reported once the collector
    // acknowledges again: the link is proven and the acknowledgement made room, so the
    // report itself does not push out what is about to be sent.
    let mut drop_reported = false;

    // Everything still in the outbox is unacknowledged: start from the beginning.
    let (mut sent, mut acked) = (0u64, 0u64);
    let mut posture_sent = 0u64;
    loop {
        if let Some(posture) = blocking(outbox, Outbox::unacked_posture).await?
            && posture.generation > posture_sent
        {
            posture_sent = posture.generation;
            let kind = report_request::Kind::Posture(posture);
            requests
                .send(ReportRequest { kind: Some(kind) })
                .await
                .context("the request stream closed")?;
        }
        if sent.saturating_sub(acked) < MAX_IN_FLIGHT {
            let batch = blocking(outbox, move |o| o.read_after(sent, BATCH)).await?;
            if let Some(last) = batch.last() {
                sent = last.seq;
                let kind = report_request::Kind::Findings(FindingBatch { findings: batch });
                requests
                    .send(ReportRequest { kind: Some(kind) })
                    .await
                    .context("the request stream closed")?;
                continue;
            }
        }
        tokio::select! {
            () = token.cancelled() => return Ok(()),
            () = outbox.appended() => {}
            response = responses.message() => match response.context("receiving acknowledgements")? {
                Some(response) => match response.kind {
                    Some(report_response::Kind::Ack(ack)) => {
                        let removed = blocking(outbox, move |o| o.ack(ack.seq)).await?;
                        debug!(seq = ack.seq, removed, "acknowledged");
                        metrics.acked(removed as u64);
                        if !drop_reported {
                            drop_reported = true;
                            if let Some(seq) = blocking(outbox, |o| o.report_dropped(findings::spool_overflow)).await? {
                                warn!(seq, "findings were dropped while the collector was unreachable; reported");
                            }
                        }
                        acked = acked.max(ack.seq);
                    }
                    Some(report_response::Kind::PostureAck(ack)) => {
                        blocking(outbox, move |o| o.ack_posture(ack.generation)).await?;
                        debug!(generation = ack.generation, "posture acknowledged");
                    }
                    None => {}
                },
                None => bail!("the collector closed the stream"),
            },
        }
    }
}

/// Runs an outbox call on the blocking pool.
async fn blocking<T: Send + 'static>(
    outbox: &Outbox,
    f: impl FnOnce(&Outbox) -> Result<T, crate::outbox::OutboxError> + Send + 'static,
) -> anyhow::Result<T> {
    let outbox = outbox.clone();
    Ok(tokio::task::spawn_blocking(move || f(&outbox)).await??)
}
