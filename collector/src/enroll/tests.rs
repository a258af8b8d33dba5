//! Enrollment against a fake API server (the testkit's `FakeKubeApi`) with real CSRs, a
//! real CA and the real kube-rs client: what is issued, to whom, and every refusal.

use std::{path::Path, sync::Arc, time::Duration};

use nodeward_proto::v1::{
    IssueCertificateRequest, agent_enrollment_service_server::AgentEnrollmentService as _,
};
use nodeward_runtime::tls::{Peer, peer_identity};
use nodeward_testkit::{
    certs::{CertsOptions, write_certs},
    kube_api::{FakeKubeApi, FakeToken},
};
use prometheus_client::{encoding::text::encode, registry::Registry};
use rustls::pki_types::{CertificateDer, pem::PemObject as _};
use tonic::{Code, Request};
use x509_parser::prelude::{FromDer as _, X509Certificate};

use super::*;
use crate::metrics::Metrics;

const SA: &str = "nodeward/nodeward-agent";
const AUDIENCE: &str = "nodeward-collector";

struct Fixture {
    api: EnrollmentApi,
    kube: FakeKubeApi,
    registry: Registry,
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let kube = FakeKubeApi::start();
        let url = kube.url();
        Self::with_api_server(kube, &url)
    }

    /// The fake's pods and tokens, the client pointed at `url`.
    fn with_api_server(kube: FakeKubeApi, url: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        write_certs(dir.path(), &CertsOptions::default()).unwrap();
        let client = kube::Client::try_from(kube::Config::new(url.parse().unwrap())).unwrap();
        let attestor = Attestor::new(client, AUDIENCE, ("nodeward", "nodeward-agent"));
        let authority =
            Authority::load(dir.path().join("ca.crt"), dir.path().join("ca.key")).unwrap();
        let metrics = Arc::new(Metrics::default());
        let mut registry = Registry::with_prefix("nodeward");
        metrics.register(&mut registry, None);
        let api = EnrollmentApi::new(
            attestor,
            authority,
            Duration::from_hours(24),
            dir.path().join("ca.crt"),
            metrics.clone(),
        );
        // The agent pod on node-a, with its projected token.
        kube.add_pod("nodeward", "agent-a", "uid-a", "node-a", "Running");
        kube.add_token(
            "token-a",
            FakeToken::projected(SA, AUDIENCE, "agent-a", "uid-a", "node-a"),
        );
        Self {
            api,
            kube,
            registry,
            dir,
        }
    }

    async fn issue(&self, csr_pem: &str, token: &str) -> Result<String, tonic::Status> {
        self.api
            .issue_certificate(Request::new(IssueCertificateRequest {
                csr_pem: csr_pem.to_owned(),
                token: token.to_owned(),
            }))
            .await
            .map(|r| {
                let r = r.into_inner();
                assert!(r.ca_pem.contains("BEGIN CERTIFICATE"));
                assert!(r.not_after.is_some());
                r.certificate_chain_pem
            })
    }

    fn count(&self, outcome: &str) -> u64 {
        let mut text = String::new();
        encode(&mut text, &self.registry).unwrap();
        let series = format!("nodeward_enrollments_total{{outcome=\"{outcome}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&series))
            .map_or(0, |v| v.trim().parse().unwrap())
    }

    fn ca_der(&self) -> Vec<u8> {
        first_cert(&std::fs::read_to_string(self.dir.path().join("ca.crt")).unwrap())
    }
}

fn csr() -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["evil.example".to_owned()]).unwrap();
    // Asks for another node and to be a CA: both must be ignored.
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "system:node:node-b");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.serialize_request(&key).unwrap().pem().unwrap()
}

fn first_cert(pem: &str) -> Vec<u8> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .unwrap()
        .unwrap()
        .to_vec()
}

#[tokio::test]
async fn an_agent_pod_gets_a_short_lived_client_certificate_for_its_node_only() {
    let f = Fixture::new();
    let chain = f.issue(&csr(), "token-a").await.unwrap();
    let leaf = first_cert(&chain);
    assert_eq!(peer_identity(&leaf), Ok(Peer::Node("node-a".into())));
    let (_, cert) = X509Certificate::from_der(&leaf).unwrap();
    let ca = f.ca_der();
    let (_, ca) = X509Certificate::from_der(&ca).unwrap();
    cert.verify_signature(Some(ca.public_key())).unwrap();
    assert!(!cert.is_ca(), "a leaf, whatever the CSR asked");
    let sans = cert.subject_alternative_name().unwrap().unwrap();
    assert_eq!(
        format!("{:?}", sans.value.general_names),
        "[URI(\"spiffe://nodeward/node/node-a\")]",
        "exactly the node's identity, none of the CSR's names"
    );
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.client_auth && !eku.server_auth);
    let lifetime = cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
    assert!(
        (24 * 3600..=24 * 3600 + 600).contains(&lifetime),
        "{lifetime}"
    );
    assert!(
        chain.matches("BEGIN CERTIFICATE").count() == 2,
        "leaf then CA"
    );
    assert_eq!(f.count("issued"), 1);
    assert!(
        f.kube
            .requests()
            .contains(&"GET /api/v1/namespaces/nodeward/pods/agent-a".to_owned())
    );
}

/// Tokens and pods that each break one rule.
fn refusable_tokens(f: &Fixture) {
    let add = |token: &str, t: FakeToken| f.kube.add_token(token, t);
    // Bound to a pod on node-a, but the token says node-b.
    add(
        "token-other-node",
        FakeToken::projected(SA, AUDIENCE, "agent-a", "uid-a", "node-b"),
    );
    add(
        "token-other-sa",
        FakeToken::projected("shop/web", AUDIENCE, "agent-a", "uid-a", "node-a"),
    );
    add(
        "token-other-audience",
        FakeToken::projected(
            SA,
            "https://kubernetes.default.svc",
            "agent-a",
            "uid-a",
            "node-a",
        ),
    );
    f.kube
        .add_pod("nodeward", "agent-gone", "uid-g", "node-a", "Running");
    add(
        "token-pod-gone",
        FakeToken::projected(SA, AUDIENCE, "agent-gone", "uid-g", "node-a"),
    );
    f.kube.remove_pod("nodeward", "agent-gone");
    // The name now belongs to another pod.
    f.kube
        .add_pod("nodeward", "agent-r", "uid-new", "node-a", "Running");
    add(
        "token-pod-replaced",
        FakeToken::projected(SA, AUDIENCE, "agent-r", "uid-old", "node-a"),
    );
    f.kube
        .add_pod("nodeward", "agent-done", "uid-d", "node-a", "Succeeded");
    add(
        "token-pod-done",
        FakeToken::projected(SA, AUDIENCE, "agent-done", "uid-d", "node-a"),
    );
    let mut unbound = FakeToken::projected(SA, AUDIENCE, "x", "y", "node-a");
    unbound.pod = None;
    add("token-unbound", unbound);
}

#[tokio::test]
async fn tokens_that_do_not_prove_an_agent_pod_on_its_node_are_refused() {
    let f = Fixture::new();
    refusable_tokens(&f);
    for (token, code, outcome, says) in [
        (
            "token-other-node",
            Code::PermissionDenied,
            "node_mismatch",
            "node-b",
        ),
        (
            "token-other-sa",
            Code::PermissionDenied,
            "wrong_service_account",
            "shop:web",
        ),
        (
            "token-unknown",
            Code::Unauthenticated,
            "token_rejected",
            "did not authenticate",
        ),
        (
            "token-other-audience",
            Code::Unauthenticated,
            "token_rejected",
            "did not authenticate",
        ),
        (
            "token-pod-gone",
            Code::PermissionDenied,
            "pod_gone",
            "no longer exists",
        ),
        (
            "token-pod-replaced",
            Code::PermissionDenied,
            "pod_replaced",
            "replaced",
        ),
        (
            "token-pod-done",
            Code::PermissionDenied,
            "pod_not_active",
            "Succeeded",
        ),
        (
            "token-unbound",
            Code::PermissionDenied,
            "token_not_bound",
            "not bound to a pod",
        ),
        (
            "",
            Code::Unauthenticated,
            "no_token",
            "no service account token",
        ),
    ] {
        let before = f.count(outcome);
        let err = f.issue(&csr(), token).await.unwrap_err();
        assert_eq!(err.code(), code, "{token}: {err}");
        assert!(err.message().contains(says), "{token}: {err}");
        assert_eq!(
            f.count(outcome),
            before + 1,
            "{token}: counted as {outcome}"
        );
    }
    assert_eq!(f.count("issued"), 0, "nothing was issued");
}

#[tokio::test]
async fn unusable_csrs_are_refused_before_the_api_is_asked() {
    let f = Fixture::new();
    let good = csr();
    // A character of the signature's base64 changed: the key is no longer proven.
    let mut lines: Vec<String> = good.lines().map(str::to_owned).collect();
    let last = lines.len() - 2;
    let mid = lines[last].len() / 2;
    let flipped = if &lines[last][mid..=mid] == "A" {
        "B"
    } else {
        "A"
    };
    lines[last].replace_range(mid..=mid, flipped);
    let tampered = lines.join("\n");
    let rsa = {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256);
        key.ok().map(|key| {
            rcgen::CertificateParams::default()
                .serialize_request(&key)
                .unwrap()
                .pem()
                .unwrap()
        })
    };
    let mut bad = vec![
        ("garbage".to_owned(), "garbage"),
        (tampered, "tampered signature"),
        ("x".repeat(authority::MAX_CSR_BYTES + 1), "too large"),
    ];
    bad.extend(rsa.map(|pem| (pem, "RSA")));
    for (pem, what) in &bad {
        let err = f.issue(pem, "token-a").await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{what}: {err}");
    }
    assert_eq!(f.count("bad_csr"), bad.len() as u64);
    assert!(f.kube.requests().is_empty(), "{:?}", f.kube.requests());
}

#[tokio::test]
async fn an_unreachable_api_server_is_unavailable_not_a_refusal() {
    // Port 1 on loopback: nothing listens, the connection is refused.
    let f = Fixture::with_api_server(FakeKubeApi::start(), "http://127.0.0.1:1");
    let err = f.issue(&csr(), "token-a").await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    assert_eq!(f.count("api_error"), 1);
    assert_eq!(f.count("issued"), 0);
}

#[tokio::test]
async fn beyond_the_concurrency_limit_requests_are_turned_away_without_asking_the_api() {
    let mut f = Fixture::new();
    f.api = f.api.with_concurrency(0);
    let err = f.issue(&csr(), "token-a").await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err}");
    assert_eq!(f.count("busy"), 1);
    assert!(f.kube.requests().is_empty());
}

#[tokio::test]
async fn a_node_name_that_is_no_dns_name_gets_nothing() {
    let f = Fixture::new();
    f.kube
        .add_pod("nodeward", "agent-x", "uid-x", "Node/../b", "Running");
    f.kube.add_token(
        "token-x",
        FakeToken::projected(SA, AUDIENCE, "agent-x", "uid-x", "Node/../b"),
    );
    let err = f.issue(&csr(), "token-x").await.unwrap_err();
    assert_eq!(err.code(), Code::Internal, "{err}");
    assert_eq!(f.count("issued"), 0);
}

#[test]
fn a_ca_key_that_does_not_match_or_a_leaf_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    write_certs(dir.path(), &CertsOptions::default()).unwrap();
    let at = |name: &str| dir.path().join(name);
    let err = Authority::load(at("ca.crt"), at("collector.key")).unwrap_err();
    assert!(err.to_string().contains("is not the key"), "{err}");
    let err = Authority::load(at("collector.crt"), at("collector.key")).unwrap_err();
    assert!(err.to_string().contains("not a CA"), "{err}");
    let err = Authority::load(at("missing.crt"), at("ca.key")).unwrap_err();
    assert!(err.to_string().contains("missing.crt"), "{err}");
    assert!(Path::new(&at("ca.crt")).exists());
}
