//! One certificate request: a new key made here (it never leaves the node), a CSR for it,
//! and the pod's service account token, sent over TLS that checks the collector's
//! certificate against the configured CA. The agent has no client certificate to offer.

use std::{path::Path, time::Duration};

use anyhow::Context as _;
use nodeward_proto::v1::{
    IssueCertificateRequest, agent_enrollment_service_client::AgentEnrollmentServiceClient,
};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

/// What the collector issued, with the key it goes with.
pub struct Issued {
    pub chain_pem: String,
    pub key_pem: String,
    pub not_after: i64,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("Issued")
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// Why a request failed; a refusal carries the collector's gRPC status.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("the collector refused: {}", .0.message())]
    Refused(tonic::Status),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// Requests a certificate from the collector at `endpoint`.
pub async fn request(
    endpoint: &str,
    ca_file: &Path,
    token_file: &Path,
) -> Result<Issued, RequestError> {
    // Read every time: the kubelet rotates the projected token.
    let token = std::fs::read_to_string(token_file)
        .with_context(|| format!("reading the service account token {}", token_file.display()))?;
    let ca = std::fs::read(ca_file).with_context(|| format!("reading {}", ca_file.display()))?;
    let key = rcgen::KeyPair::generate().context("generating a key")?;
    let csr = rcgen::CertificateParams::default()
        .serialize_request(&key)
        .and_then(|csr| csr.pem())
        .context("making the CSR")?;
    let channel = Endpoint::from_shared(endpoint.to_owned())
        .with_context(|| format!("collector endpoint {endpoint:?}"))?
        .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)))
        .context("collector TLS configuration")?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .connect()
        .await
        .context("connecting to the collector")?;
    let response = AgentEnrollmentServiceClient::new(channel)
        .issue_certificate(IssueCertificateRequest {
            csr_pem: csr,
            token: token.trim().to_owned(),
        })
        .await
        .map_err(RequestError::Refused)?
        .into_inner();
    Ok(Issued {
        chain_pem: response.certificate_chain_pem,
        key_pem: key.serialize_pem(),
        not_after: response.not_after.map_or(0, |t| t.seconds),
    })
}
