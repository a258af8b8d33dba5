//! Agent enrollment with the real collector and agent binaries, over real mutual TLS; only
//! the Kubernetes API is a fake (`kube_api`: `TokenReview` and pods). An agent with no
//! certificate gets one for its node and reports with it; tokens that do not prove an
//! agent pod on a node, and unusable CSRs, get nothing; a certificate still speaks for
//! its own node only, and the other APIs still need a certificate.

mod common;

use std::{os::unix::fs::PermissionsExt as _, path::Path, time::Duration};

use common::{FINDING_DEADLINE, connect, wait_enforced};
use nodeward_proto::v1::{
    Hello, IssueCertificateRequest, ReportRequest, SubscribeRequest,
    agent_enrollment_service_client::AgentEnrollmentServiceClient,
    agent_service_client::AgentServiceClient, report_request, soc_service_client::SocServiceClient,
};
use nodeward_testkit::{
    IMDS_V4, PodSpec, SimNode,
    certs::{CertsOptions, write_certs},
    kube_api::{FakeKubeApi, FakeToken},
    require_root,
    stack::{AgentProcess, AgentSpec, CollectorProcess, TailProcess},
    wait_until,
};
use tonic::{
    Code,
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity},
};

const SA: &str = "nodeward/nodeward-agent";
const AUDIENCE: &str = "nodeward-collector";

/// A CA and the collector's, SOC client's certificates in `dir`; no node certificates.
fn issue(dir: &Path) {
    let options = CertsOptions {
        nodes: Vec::new(),
        ..CertsOptions::default()
    };
    write_certs(dir, &options).expect("issuing test certificates");
}

/// A collector in `dir` with mutual TLS from `certs` and enrollment signing with the same
/// CA, asking `kube` about tokens.
fn collector(dir: &Path, certs: &Path, kube: &FakeKubeApi) -> CollectorProcess {
    std::fs::create_dir_all(dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    kube.write_kubeconfig(&kubeconfig);
    let enrollment = format!(
        "enrollment:\n  caCertFile: {}\n  caKeyFile: {}\n  serviceAccount: {SA}\n  audience: {AUDIENCE}\n  ttl: 1h\n  kubeconfig: {}\n",
        certs.join("ca.crt").display(),
        certs.join("ca.key").display(),
        kubeconfig.display()
    );
    CollectorProcess::start_with(dir, Some(certs), &enrollment)
}

/// A gRPC channel trusting `certs`' CA, presenting `identity` (cert, key files) if any.
async fn channel(endpoint: &str, certs: &Path, identity: Option<(&Path, &Path)>) -> Channel {
    let ca = std::fs::read(certs.join("ca.crt")).unwrap();
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
    if let Some((cert, key)) = identity {
        let (cert, key) = (std::fs::read(cert).unwrap(), std::fs::read(key).unwrap());
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    Endpoint::from_shared(endpoint.to_owned())
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .unwrap()
}

/// Says hello as `node` on a Report stream; the collector's verdict comes as the first
/// response (or the call's error).
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
    match tokio::time::timeout(Duration::from_secs(2), responses.message()).await {
        Ok(Err(status)) => Err(status),
        Ok(Ok(_)) | Err(_) => Ok(()),
    }
}

fn csr() -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    rcgen::CertificateParams::default()
        .serialize_request(&key)
        .unwrap()
        .pem()
        .unwrap()
}

fn soc_args(certs: &Path) -> Vec<String> {
    [
        ("--ca-file", "ca.crt"),
        ("--cert-file", "soc.crt"),
        ("--key-file", "soc.key"),
    ]
    .into_iter()
    .flat_map(|(flag, file)| [flag.to_owned(), certs.join(file).display().to_string()])
    .collect()
}

#[test]
fn an_agent_without_a_certificate_enrolls_and_reports_for_its_node_only() {
    if !require_root("an_agent_without_a_certificate_enrolls_and_reports_for_its_node_only") {
        return;
    }
    let node = SimNode::builder().pod(PodSpec::new("web")).build();
    let scratch = node.scratch_dir().to_owned();
    let certs = scratch.join("certs");
    issue(&certs);
    let kube = FakeKubeApi::start();
    let pod = format!("nodeward-agent-{}", node.id());
    kube.add_pod("nodeward", &pod, "uid-agent", node.id(), "Running");
    kube.add_token(
        "agent-token",
        FakeToken::projected(SA, AUDIENCE, &pod, "uid-agent", node.id()),
    );
    let token_file = scratch.join("token");
    std::fs::write(&token_file, "agent-token\n").unwrap();
    // The node has the collector's CA only, as a fresh node would.
    let pki = scratch.join("pki");
    std::fs::create_dir_all(&pki).unwrap();
    std::fs::copy(certs.join("ca.crt"), pki.join("ca.crt")).unwrap();

    let mut collector = collector(&scratch.join("collector"), &certs, &kube);
    let endpoint = collector.endpoint();
    let mut tail = TailProcess::start_with(
        &endpoint,
        Some(0),
        &soc_args(&certs),
        &scratch.join("tail.log"),
    );
    let spec = AgentSpec::new(&endpoint)
        .tls(&pki, "tls")
        .enrollment(&token_file);
    let mut agent = AgentProcess::start(&node, &spec);
    agent.wait_active();
    let web = node.pod("web");
    wait_enforced(&web);
    let _ = connect(&web, &IMDS_V4.to_string(), 80);
    tail.wait_for(
        FINDING_DEADLINE * 3,
        "imds-access from the enrolled agent",
        |v| v["finding"]["ruleId"] == "imds-access" && v["nodeName"] == node.id(),
    );

    // The certificate names this node, and its key never left the node: 0600.
    let chain = std::fs::read(pki.join("tls.crt")).unwrap();
    let (_, pem) = x509_parser::pem::parse_x509_pem(&chain).unwrap();
    let cert = pem.parse_x509().unwrap();
    let sans = cert.subject_alternative_name().unwrap().unwrap();
    assert_eq!(
        format!("{:?}", sans.value.general_names),
        format!("[URI(\"spiffe://nodeward/node/{}\")]", node.id())
    );
    let mode = std::fs::metadata(pki.join("tls.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(
        agent.metric("nodeward_enrollments_total{outcome=\"issued\"}"),
        Some(1.0)
    );
    let log = collector.daemon().log();
    assert!(log.contains("issued an agent certificate"), "{log}");
    assert!(log.contains(&pod), "the issuance names the pod:\n{log}");

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        // The issued certificate speaks for this node only.
        let (issued, key) = (pki.join("tls.crt"), pki.join("tls.key"));
        let ch = channel(&endpoint, &certs, Some((&issued, &key))).await;
        let err = report_as(ch, "another-node").await.unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{err}");
        // Without a certificate the handshake now succeeds, but nothing else does.
        let ch = channel(&endpoint, &certs, None).await;
        let err = report_as(ch.clone(), node.id()).await.unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "{err}");
        let err = SocServiceClient::new(ch)
            .subscribe(SubscribeRequest::default())
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "{err}");
    });
    let log = collector.daemon();
    wait_until(
        Duration::from_secs(5),
        "the refusals in the collector's log",
        || {
            let log = log.log();
            [
                "refused: an agent reported for another node",
                "refused: no client certificate",
            ]
            .iter()
            .all(|line| log.contains(line))
            .then_some(())
        },
    );
    drop(agent);
}

#[test]
fn tokens_that_prove_no_agent_pod_on_a_node_and_bad_csrs_get_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    issue(&certs);
    let kube = FakeKubeApi::start();
    kube.add_pod("nodeward", "agent-a", "uid-a", "node-a", "Running");
    kube.add_token(
        "good",
        FakeToken::projected(SA, AUDIENCE, "agent-a", "uid-a", "node-a"),
    );
    // A token saying node-b for a pod that runs on node-a.
    kube.add_token(
        "other-node",
        FakeToken::projected(SA, AUDIENCE, "agent-a", "uid-a", "node-b"),
    );
    kube.add_token(
        "other-sa",
        FakeToken::projected("shop/web", AUDIENCE, "agent-a", "uid-a", "node-a"),
    );
    kube.add_token(
        "gone",
        FakeToken::projected(SA, AUDIENCE, "agent-old", "uid-old", "node-a"),
    );
    kube.add_token(
        "replaced",
        FakeToken::projected(SA, AUDIENCE, "agent-a", "uid-before", "node-a"),
    );
    let mut collector = collector(&dir.path().join("collector"), &certs, &kube);
    let endpoint = collector.endpoint();

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut client = AgentEnrollmentServiceClient::new(channel(&endpoint, &certs, None).await);
        for (token, csr_pem, code, outcome) in [
            ("other-node", csr(), Code::PermissionDenied, "node_mismatch"),
            ("other-sa", csr(), Code::PermissionDenied, "wrong_service_account"),
            ("not-a-token", csr(), Code::Unauthenticated, "token_rejected"),
            ("gone", csr(), Code::PermissionDenied, "pod_gone"),
            ("replaced", csr(), Code::PermissionDenied, "pod_replaced"),
            ("good", "-----BEGIN CERTIFICATE REQUEST-----\nnot a CSR\n-----END CERTIFICATE REQUEST-----\n".to_owned(), Code::InvalidArgument, "bad_csr"),
        ] {
            let err = client
                .issue_certificate(IssueCertificateRequest { csr_pem, token: token.to_owned() })
                .await
                .unwrap_err();
            assert_eq!(err.code(), code, "{token}: {err}");
            let log = collector.daemon();
            wait_until(Duration::from_secs(5), outcome, || {
                log.log()
                    .lines()
                    .any(|l| l.contains("refused: agent certificate not issued") && l.contains(outcome))
                    .then_some(())
            });
        }
        // The same client, with the agent pod's own token, gets its certificate.
        let issued = client
            .issue_certificate(IssueCertificateRequest { csr_pem: csr(), token: "good".into() })
            .await
            .unwrap()
            .into_inner();
        assert!(issued.certificate_chain_pem.contains("BEGIN CERTIFICATE"));
    });
    let log = collector.daemon().log();
    assert_eq!(
        log.matches("issued an agent certificate").count(),
        1,
        "only the good token got a certificate:\n{log}"
    );
}
