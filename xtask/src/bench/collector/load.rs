//! The simulated fleet: agents that stream findings like `agent/src/stream.rs` (hello,
//! then batches in sequence order, at most `MAX_IN_FLIGHT` unacknowledged), and one SOC
//! subscriber that timestamps each finding's arrival.
//!
//! A finding's `time` is the wall-clock instant its agent sent it, so the subscriber's
//! arrival time minus `time` is the end-to-end latency (agent → collector → store → feed →
//! SOC). Both ends run in this process and read the same clock.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime},
};

use anyhow::{Context as _, bail};
use nodeward_proto::v1::{
    Container, Finding, FindingBatch, FindingCategory, Hello, NetworkDestination, Pod, Process,
    Protocol, ReportRequest, Severity, SubscribeRequest, Verdict,
    agent_service_client::AgentServiceClient, report_request, report_response,
    soc_service_client::SocServiceClient,
};
use tokio::{
    sync::{Barrier, mpsc, watch},
    time::Instant,
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

/// Findings per message, as the agent sends them.
const BATCH: usize = 256;
/// Unacknowledged findings an agent allows itself, as the agent does.
const MAX_IN_FLIGHT: u64 = 4 * BATCH as u64;
/// How long agents wait, after the measured window, for their last acknowledgements.
const DRAIN: Duration = Duration::from_mins(3);
/// Node names start with this, so the subscriber ignores the collector's own findings.
const NODE_PREFIX: &str = "bench-node-";

/// The shape of the load.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    pub agents: usize,
    pub window: Duration,
    /// Findings per second per agent; 0: as fast as acknowledgements allow.
    pub rate: u32,
}

/// What the fleet and the subscriber saw.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Acknowledged (stored) within the measured window.
    pub stored_in_window: u64,
    /// Acknowledged by the end of the drain.
    pub stored: u64,
    pub sent: u64,
    /// Findings that reached the subscriber, and their latencies in microseconds.
    pub latencies_us: Vec<u64>,
    /// Agents whose stream failed, with why.
    pub failures: Vec<String>,
}

/// Connects every agent and the subscriber, runs the load for `load.window`, then drains.
pub async fn run(endpoint: &str, load: Load) -> anyhow::Result<Outcome> {
    let endpoint = Endpoint::from_shared(endpoint.to_owned())?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let received = Arc::new(AtomicU64::new(0));
    let subscriber = tokio::spawn(subscribe(
        endpoint.connect().await?,
        received.clone(),
        stop_rx,
    ));
    // Everyone connects before the clock starts: connection setup is not throughput.
    let barrier = Arc::new(Barrier::new(load.agents + 1));
    let mut agents = Vec::with_capacity(load.agents);
    for index in 0..load.agents {
        let (endpoint, barrier) = (endpoint.clone(), barrier.clone());
        agents.push(tokio::spawn(async move {
            agent(endpoint, index, load, &barrier).await
        }));
    }
    barrier.wait().await;
    let mut outcome = Outcome::default();
    for task in agents {
        match task.await? {
            Ok(stats) => {
                outcome.stored_in_window += stats.acked_in_window;
                outcome.stored += stats.acked;
                outcome.sent += stats.sent;
            }
            Err(err) => outcome.failures.push(format!("{err:#}")),
        }
    }
    // Everything acknowledged was published before its ack was sent, but may still be
    // on its way to the subscriber.
    let grace = Instant::now() + Duration::from_secs(10);
    while received.load(Ordering::Relaxed) < outcome.stored && Instant::now() < grace {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop_tx.send_replace(true);
    outcome.latencies_us = subscriber.await??;
    Ok(outcome)
}

struct AgentStats {
    sent: u64,
    acked_in_window: u64,
    acked: u64,
}

async fn agent(
    endpoint: Endpoint,
    index: usize,
    load: Load,
    barrier: &Barrier,
) -> anyhow::Result<AgentStats> {
    let connected = connect_agent(endpoint, index).await;
    // Wait at the barrier even on failure, or the others would wait forever.
    barrier.wait().await;
    let (requests, mut responses) = connected?;
    let start = Instant::now();
    let deadline = start + load.window;
    let node = format!("{NODE_PREFIX}{index:04}");
    let (mut sent, mut acked) = (0u64, 0u64);
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    loop {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let due = if load.rate == 0 {
            u64::MAX
        } else {
            let elapsed = now.duration_since(start).as_micros();
            u64::try_from(elapsed * u128::from(load.rate) / 1_000_000).unwrap_or(u64::MAX)
        };
        let room = MAX_IN_FLIGHT - (sent - acked);
        let n = due.saturating_sub(sent).min(room).min(BATCH as u64);
        if n > 0 {
            let findings = (sent + 1..=sent + n)
                .map(|seq| finding(&node, seq))
                .collect();
            let kind = report_request::Kind::Findings(FindingBatch { findings });
            requests
                .send(ReportRequest { kind: Some(kind) })
                .await
                .context("the request stream closed")?;
            sent += n;
            continue;
        }
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => break,
            _ = tick.tick(), if load.rate > 0 => {}
            response = responses.message() => acked = acked.max(ack_of(response)?),
        }
    }
    let acked_in_window = acked;
    let drained = tokio::time::timeout(DRAIN, async {
        while acked < sent {
            acked = acked.max(ack_of(responses.message().await)?);
        }
        anyhow::Ok(())
    })
    .await;
    match drained {
        Ok(result) => result?,
        Err(_) => bail!(
            "{node}: {} findings unacknowledged after {DRAIN:?}",
            sent - acked
        ),
    }
    Ok(AgentStats {
        sent,
        acked_in_window,
        acked,
    })
}

type Responses = tonic::Streaming<nodeward_proto::v1::ReportResponse>;

/// Its own connection (as every node has), the hello, and the open stream.
async fn connect_agent(
    endpoint: Endpoint,
    index: usize,
) -> anyhow::Result<(mpsc::Sender<ReportRequest>, Responses)> {
    let channel = endpoint.connect().await.context("connecting")?;
    let mut client = AgentServiceClient::new(channel);
    let (requests, rx) = mpsc::channel(4);
    let hello = Hello {
        node_name: format!("{NODE_PREFIX}{index:04}"),
        agent_version: "bench".into(),
        boot_id: format!("boot-{index:04}"),
        stream_id: format!("bench-stream-{index:04}-{}", std::process::id()),
        cluster: "bench".into(),
    };
    requests
        .send(ReportRequest {
            kind: Some(report_request::Kind::Hello(hello)),
        })
        .await?;
    let responses = client
        .report(ReceiverStream::new(rx))
        .await
        .context("opening the report stream")?
        .into_inner();
    Ok((requests, responses))
}

fn ack_of(
    response: Result<Option<nodeward_proto::v1::ReportResponse>, tonic::Status>,
) -> anyhow::Result<u64> {
    match response.context("receiving acknowledgements")? {
        Some(response) => match response.kind {
            Some(report_response::Kind::Ack(ack)) => Ok(ack.seq),
            _ => Ok(0),
        },
        None => bail!("the collector closed the stream"),
    }
}

/// Subscribes from now on and records each bench finding's latency until `stop`.
async fn subscribe(
    channel: Channel,
    received: Arc<AtomicU64>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<Vec<u64>> {
    let mut stream = SocServiceClient::new(channel)
        .subscribe(SubscribeRequest::default())
        .await
        .context("subscribing")?
        .into_inner();
    let mut latencies = Vec::new();
    loop {
        let record = tokio::select! {
            _ = stop.changed() => return Ok(latencies),
            record = stream.message() => record.context("the SOC feed")?,
        };
        let Some(record) = record else {
            bail!("the collector ended the SOC feed");
        };
        if !record.node_name.starts_with(NODE_PREFIX) {
            continue;
        }
        received.fetch_add(1, Ordering::Relaxed);
        let sent = record
            .finding
            .and_then(|f| f.time)
            .and_then(|t| SystemTime::try_from(t).ok());
        if let Some(elapsed) = sent.and_then(|t| SystemTime::now().duration_since(t).ok()) {
            latencies.push(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX));
        }
    }
}

/// One of three findings an agent really makes, stamped with the send time.
fn finding(node: &str, seq: u64) -> Finding {
    let pod = Pod {
        uid: format!("5f1c2a7e-0000-4000-8000-{seq:012}"),
        namespace: "payments".into(),
        name: format!("checkout-7d9f8b6c4-{}", seq % 97),
        service_account: "checkout".into(),
        labels: [("app".to_owned(), "checkout".to_owned())].into(),
        owner: "Deployment/checkout".into(),
        ..Pod::default()
    };
    let container = Container {
        id: "3b4f".repeat(16),
        name: "app".into(),
        image: "registry.example.com/payments/checkout:1.42.0".into(),
    };
    let process = |binary: &str, args: &[&str]| Process {
        pid: u32::try_from(seq % 30_000).unwrap_or(1) + 1000,
        uid: 1000,
        comm: binary.rsplit('/').next().unwrap_or(binary).into(),
        cgroup_id: 4242,
        binary: binary.into(),
        args: args.iter().map(|&a| a.to_owned()).collect(),
        ppid: 1,
        ..Process::default()
    };
    let mut finding = Finding {
        seq,
        time: Some(prost_types::Timestamp::from(SystemTime::now())),
        pod: Some(pod),
        container: Some(container),
        count: 1,
        ..Finding::default()
    };
    match seq % 3 {
        0 => {
            finding.rule_id = "shell-in-container".into();
            finding.severity = Severity::High.into();
            finding.category = FindingCategory::Runtime.into();
            finding.summary = format!("shell /bin/sh started in payments/checkout on {node}");
            finding.process = Some(process("/bin/sh", &["sh", "-c", "id; uname -a"]));
            finding.techniques = vec!["T1059.004".into()];
            finding.verdict = Verdict::Allowed.into();
        }
        1 => {
            finding.rule_id = "imds-access".into();
            finding.severity = Severity::High.into();
            finding.category = FindingCategory::Enforcement.into();
            finding.summary = format!("pod payments/checkout tried to reach IMDS on {node}");
            finding.process = Some(process(
                "/usr/bin/curl",
                &["curl", "http://169.254.169.254/latest/meta-data/"],
            ));
            finding.destination = Some(NetworkDestination {
                address: "169.254.169.254".into(),
                port: 80,
                protocol: Protocol::Tcp.into(),
                ip_protocol: 6,
            });
            finding.verdict = Verdict::Blocked.into();
            finding.techniques = vec!["T1552.005".into()];
        }
        _ => {
            finding.rule_id = "miner-port".into();
            finding.severity = Severity::Critical.into();
            finding.category = FindingCategory::Runtime.into();
            finding.summary = format!("connection to a mining pool port from {node}");
            finding.process = Some(process("/tmp/xmrig", &["xmrig", "-o", "pool:3333"]));
            finding.destination = Some(NetworkDestination {
                address: "203.0.113.7".into(),
                port: 3333,
                protocol: Protocol::Tcp.into(),
                ip_protocol: 6,
            });
            finding.verdict = Verdict::Allowed.into();
            finding.techniques = vec!["T1496".into()];
        }
    }
    finding
}
