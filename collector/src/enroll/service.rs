//! `AgentEnrollmentService` over gRPC: checks, signs, logs and counts.

use std::{path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context as _;
use nodeward_proto::v1::{
    IssueCertificateRequest, IssueCertificateResponse,
    agent_enrollment_service_server::AgentEnrollmentService,
};
use tokio::sync::Semaphore;
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use super::{Attestor, Authority, EnrollError, EnrollmentConfig, authority};
use crate::metrics::Metrics;

/// The largest token accepted (projected tokens are about 1 KiB).
const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Requests checked at once. Callers need no certificate, so each could otherwise make
/// the collector send a `TokenReview`: this bounds what a flood costs the API server.
/// Agents retry a refusal with backoff; a whole cluster of nodes enrolling at once
/// takes a few rounds.
const MAX_CONCURRENT: usize = 8;

pub struct EnrollmentApi {
    attestor: Attestor,
    authority: Authority,
    ttl: Duration,
    /// The CA bundle client certificates are checked against, sent back to agents.
    trust_file: PathBuf,
    metrics: Arc<Metrics>,
    permits: Semaphore,
}

impl EnrollmentApi {
    pub fn new(
        attestor: Attestor,
        authority: Authority,
        ttl: Duration,
        trust_file: PathBuf,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            attestor,
            authority,
            ttl,
            trust_file,
            metrics,
            permits: Semaphore::new(MAX_CONCURRENT),
        }
    }

    /// At most `n` requests checked at once (tests).
    #[cfg(test)]
    #[must_use]
    pub fn with_concurrency(mut self, n: usize) -> Self {
        self.permits = Semaphore::new(n);
        self
    }

    /// From the config: the CA checked, and a Kubernetes client from `kubeconfig` or
    /// else the pod's in-cluster service account (never the ambient `$KUBECONFIG`, which
    /// could point a production collector at another cluster).
    pub async fn from_config(
        config: &EnrollmentConfig,
        trust_file: PathBuf,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        let authority = Authority::load(config.ca_cert_file.clone(), config.ca_key_file.clone())
            .context("enrollment CA")?;
        let kube_config = match &config.kubeconfig {
            Some(path) => {
                let kubeconfig = kube::config::Kubeconfig::read_from(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                kube::Config::from_custom_kubeconfig(
                    kubeconfig,
                    &kube::config::KubeConfigOptions::default(),
                )
                .await
                .with_context(|| format!("loading {}", path.display()))?
            }
            None => kube::Config::incluster()
                .context("enrollment needs the collector's in-cluster service account")?,
        };
        let client =
            kube::Client::try_from(kube_config).context("building the Kubernetes client")?;
        let attestor = Attestor::new(
            client,
            &config.audience,
            config.service_account().map_err(anyhow::Error::msg)?,
        );
        Ok(Self::new(
            attestor,
            authority,
            config.ttl(),
            trust_file,
            metrics,
        ))
    }

    fn refuse(&self, addr: &str, err: &EnrollError, pod: Option<&super::Attested>) -> Status {
        let outcome = err.outcome();
        let error = chain(err);
        if let Some(p) = pod {
            warn!(
                addr,
                outcome,
                node = p.node,
                namespace = p.namespace,
                pod = p.pod,
                pod_uid = p.pod_uid,
                error,
                "refused: agent certificate not issued"
            );
        } else {
            warn!(
                addr,
                outcome, error, "refused: agent certificate not issued"
            );
        }
        self.metrics.enrollment(outcome);
        err.status()
    }
}

/// The error and its sources, as `{:#}` shows an `anyhow` chain.
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[tonic::async_trait]
impl AgentEnrollmentService for EnrollmentApi {
    async fn issue_certificate(
        &self,
        request: Request<IssueCertificateRequest>,
    ) -> Result<Response<IssueCertificateResponse>, Status> {
        let addr = request
            .remote_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let Ok(_permit) = self.permits.try_acquire() else {
            return Err(self.refuse(&addr, &EnrollError::Busy, None));
        };
        let request = request.into_inner();
        let token = request.token.trim();
        if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
            return Err(self.refuse(&addr, &EnrollError::NoToken, None));
        }
        // Before the token: a CSR that cannot be used costs no call to the API server.
        let csr =
            authority::parse_csr(&request.csr_pem).map_err(|err| self.refuse(&addr, &err, None))?;
        let attested = self
            .attestor
            .attest(token)
            .await
            .map_err(|err| self.refuse(&addr, &err, None))?;
        let issued = self
            .authority
            .issue(&csr, &attested.node, self.ttl)
            .map_err(|err| self.refuse(&addr, &err, Some(&attested)))?;
        let ca_pem = std::fs::read_to_string(&self.trust_file).map_err(|e| {
            let err = EnrollError::Internal(format!("reading {}: {e}", self.trust_file.display()));
            self.refuse(&addr, &err, Some(&attested))
        })?;
        let not_after = issued.not_after.unix_timestamp();
        info!(
            addr,
            node = attested.node,
            namespace = attested.namespace,
            pod = attested.pod,
            pod_uid = attested.pod_uid,
            serial = issued.serial,
            not_after,
            "issued an agent certificate"
        );
        self.metrics.enrollment("issued");
        Ok(Response::new(IssueCertificateResponse {
            certificate_chain_pem: issued.chain_pem,
            ca_pem,
            not_after: Some(prost_types::Timestamp {
                seconds: not_after,
                nanos: 0,
            }),
        }))
    }
}
