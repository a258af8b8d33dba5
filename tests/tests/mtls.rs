//! Mutual TLS between agents, the collector and SOC clients, with real processes: the
//! collector accepts an agent only with a certificate from its CA and only for the node
//! that certificate names; SOC clients can only read; every refusal is logged.

mod common;

use std::{path::Path, time::Duration};

use common::{FINDING_DEADLINE, connect, wait_enforced};
use nodeward_proto::v1::{
    Hello, ReportRequest, SubscribeRequest, agent_service_client::AgentServiceClient,
    report_request, soc_service_client::SocServiceClient,
};
use nodeward_testkit::{
    IMDS_V4, PodSpec, SimNode,
    certs::{CertsOptions, write_certs},
    require_root,
    stack::{AgentProcess, AgentSpec, CollectorProcess, TailProcess},
    wait_until,
};
use tonic::{
    Code,
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity},
};

fn issue(dir: &Path, nodes: &[&str]) {
    let options = CertsOptions {
        nodes: nodes.iter().map(|n| (*n).to_owned()).collect(),
        ..CertsOptions::default()
    };
    write_certs(dir, &options).expect("issuing test certificates");
}

fn soc_args(certs: &Path, cert: &str) -> Vec<String> {
    [
        ("--ca-file", "ca.crt".to_owned()),
        ("--cert-file", format!("{cert}.crt")),
        ("--key-file", format!("{cert}.key")),
    ]
    .into_iter()
    .flat_map(|(flag, file)| [flag.to_owned(), certs.join(file).display().to_string()])
    .collect()
}

/// A gRPC channel to `endpoint` presenting `cert` (none: no client certificate) and
/// trusting `ca_dir`'s CA.
async fn channel(
    endpoint: &str,
    ca_dir: &Path,
    cert: Option<(&Path, &str)>,
) -> Result<Channel, tonic::transport::Error> {
    let ca = std::fs::read(ca_dir.join("ca.crt")).unwrap();
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
    if let Some((dir, name)) = cert {
        let pem = |ext: &str| std::fs::read(dir.join(format!("{name}.{ext}"))).unwrap();
        tls = tls.identity(Identity::from_pem(pem("crt"), pem("key")));
    }
    Endpoint::from_shared(endpoint.to_owned())
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
}

/// Opens a Report stream saying hello as `node`; the collector's verdict comes as the
/// first response (or the call's error).
async fn report_as(channel: Channel, node: &str) -> Result<(), tonic::Status> {
    let hello = ReportRequest {
        kind: Some(report_request::Kind::Hello(Hello {
            node_name: node.to_owned(),
            agent_version: "test".into(),
            boot_id: "b".into(),
            stream_id: "s".into(),
            cluster: String::new(),
        })),
    };
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(hello).await.unwrap();
    let mut responses = AgentServiceClient::new(channel)
        .report(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    // A refused hello ends the stream with the error; an accepted one stays open.
    match tokio::time::timeout(Duration::from_secs(2), responses.message()).await {
        Ok(Err(status)) => Err(status),
        Ok(Ok(_)) | Err(_) => Ok(()),
    }
}

/// A collector with mutual TLS (certificates from `certs`), a SOC subscriber with the SOC
/// certificate, and an agent whose certificate files are in `agent_dir`. Returns once the
/// agent runs and `web` is refused IMDS, after one more attempt from `web` to report.
struct TlsStack {
    /// Held to stop the agent first when the stack drops.
    _agent: AgentProcess,
    tail: TailProcess,
    collector: CollectorProcess,
}

impl TlsStack {
    fn start(node: &SimNode, certs: &Path, agent_dir: &Path) -> Self {
        let collector_dir = node.scratch_dir().join("collector");
        std::fs::create_dir_all(&collector_dir).unwrap();
        let collector = CollectorProcess::start_tls(&collector_dir, certs);
        let endpoint = collector.endpoint();
        assert!(endpoint.starts_with("https://"), "{endpoint}");
        let tail = TailProcess::start_with(
            &endpoint,
            Some(0),
            &soc_args(certs, "soc"),
            &node.scratch_dir().join("tail.log"),
        );
        let spec = AgentSpec::new(&endpoint).tls(agent_dir, node.id());
        let mut agent = AgentProcess::start(node, &spec);
        agent.wait_active();
        let web = node.pod("web");
        wait_enforced(&web);
        let _ = connect(&web, &IMDS_V4.to_string(), 80);
        Self {
            _agent: agent,
            tail,
            collector,
        }
    }

    /// Waits for the attempt's finding from this node.
    fn wait_attempt(&mut self, node: &SimNode, deadline: Duration, what: &str) {
        self.tail.wait_for(deadline, what, |v| {
            v["finding"]["ruleId"] == "imds-access" && v["nodeName"] == node.id()
        });
    }
}

/// Copies the node's certificate and key from `from` into `to`.
fn install_node_cert(node: &SimNode, from: &Path, to: &Path) {
    for ext in ["crt", "key"] {
        let name = format!("{}.{ext}", node.id());
        std::fs::copy(from.join(&name), to.join(&name)).unwrap();
    }
}

#[test]
fn only_certified_agents_report_and_only_for_their_own_node() {
    if !require_root("only_certified_agents_report_and_only_for_their_own_node") {
        return;
    }
    let node = SimNode::builder().pod(PodSpec::new("web")).build();
    let certs = node.scratch_dir().join("certs");
    let foreign = node.scratch_dir().join("foreign-ca");
    issue(&certs, &[node.id(), "node-b"]);
    issue(&foreign, &[node.id()]);
    // The real agent with its node's certificate: its finding reaches a SOC client.
    let mut stack = TlsStack::start(&node, &certs, &certs);
    let endpoint = stack.collector.endpoint();
    stack.wait_attempt(&node, FINDING_DEADLINE, "imds-access over mTLS");

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        // Claiming another node's name with a valid certificate.
        let ch = channel(&endpoint, &certs, Some((&certs, "node-b")))
            .await
            .unwrap();
        let err = report_as(ch, node.id()).await.unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{err}");

        // A SOC client calling the agent API.
        let ch = channel(&endpoint, &certs, Some((&certs, "soc")))
            .await
            .unwrap();
        let err = report_as(ch, node.id()).await.unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{err}");

        // An agent calling the SOC API.
        let ch = channel(&endpoint, &certs, Some((&certs, "node-b")))
            .await
            .unwrap();
        let err = SocServiceClient::new(ch)
            .subscribe(SubscribeRequest::default())
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{err}");

        // No client certificate, and one from another CA: the handshake fails, so the
        // connection (or the first call on it) does.
        for cert in [None, Some((foreign.as_path(), node.id()))] {
            let refused = match channel(&endpoint, &certs, cert).await {
                Err(_) => true,
                Ok(ch) => report_as(ch, node.id()).await.is_err(),
            };
            assert!(refused, "a client with {cert:?} was let in");
        }
    });

    // Every refusal is in the collector's log, with its reason.
    let log = stack.collector.daemon();
    wait_until(
        Duration::from_secs(5),
        "the refusals in the collector's log",
        || {
            let log = log.log();
            [
                "refused: an agent reported for another node",
                "refused: a SOC client called the agent API",
                "refused: an agent called the SOC API",
                "TLS handshake refused",
            ]
            .iter()
            .all(|line| log.contains(line))
            .then_some(())
        },
    );
}

#[test]
fn an_agent_with_a_foreign_certificate_keeps_its_findings_until_it_is_trusted() {
    if !require_root("an_agent_with_a_foreign_certificate_keeps_its_findings_until_it_is_trusted") {
        return;
    }
    let node = SimNode::builder().pod(PodSpec::new("web")).build();
    let certs = node.scratch_dir().join("certs");
    let foreign = node.scratch_dir().join("foreign-ca");
    issue(&certs, &[node.id()]);
    issue(&foreign, &[node.id()]);
    // The foreign node certificate, with the collector's CA so the agent trusts the
    // collector: only the collector's check of the client can refuse it.
    std::fs::copy(certs.join("ca.crt"), foreign.join("ca.crt")).unwrap();
    let mut stack = TlsStack::start(&node, &certs, &foreign);
    let log = stack.collector.daemon();
    wait_until(Duration::from_secs(10), "the foreign agent refused", || {
        log.log().contains("TLS handshake refused").then_some(())
    });
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        stack
            .tail
            .try_find(|v| v["finding"]["ruleId"] == "imds-access")
            .is_none(),
        "a finding from an untrusted agent was stored"
    );

    // Issued a trusted certificate (same files, now from the collector's CA), the agent
    // delivers what it kept at its next connect: nothing was lost while refused.
    install_node_cert(&node, &certs, &foreign);
    stack.wait_attempt(&node, FINDING_DEADLINE * 3, "the kept finding");
}

#[test]
fn an_agent_without_its_certificate_yet_enforces_and_reports_once_it_appears() {
    if !require_root("an_agent_without_its_certificate_yet_enforces_and_reports_once_it_appears") {
        return;
    }
    let node = SimNode::builder().pod(PodSpec::new("web")).build();
    let certs = node.scratch_dir().join("certs");
    issue(&certs, &[node.id()]);
    // The node's own directory has only the CA so far, as on a node whose certificate
    // is provisioned after the agent starts.
    let pending = node.scratch_dir().join("pending");
    std::fs::create_dir_all(&pending).unwrap();
    std::fs::copy(certs.join("ca.crt"), pending.join("ca.crt")).unwrap();
    // Enforcement does not wait for the collector link.
    let mut stack = TlsStack::start(&node, &certs, &pending);
    install_node_cert(&node, &certs, &pending);
    stack.wait_attempt(
        &node,
        FINDING_DEADLINE * 3,
        "the finding kept until the certificate came",
    );
}
