//! Enrollment: when `collector.enrollment` is set, this node's client certificate comes
//! from the collector. While `certFile` is missing, unusable, not the key's, or within a
//! third of its lifetime of expiry, the agent asks for a new one (see [`request`]) and
//! writes it; the collector stream reads the files at every connect, so it picks the
//! certificate up at its next attempt. Failures are retried with backoff. Nothing else
//! waits for this: enforcement runs, and findings wait in the outbox.

mod files;
mod request;

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use self::{
    files::Due,
    request::{RequestError, request},
};
use crate::{backoff::Backoff, metrics::Metrics};

/// Even a certificate far from expiry is looked at again this often (it may have been
/// replaced or deleted by hand, or the clock jumped).
const RECHECK: Duration = Duration::from_hours(1);

/// Where the certificate comes from and goes.
#[derive(Debug, Clone)]
pub struct Enrollment {
    pub endpoint: String,
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub token_file: PathBuf,
    /// The node this agent reports as; the certificate should name it.
    pub node_name: String,
    /// Rung after new files are written, for the collector stream.
    pub installed: Arc<Notify>,
}

/// Keeps the certificate current until `token` is cancelled.
pub async fn run(
    enrollment: Enrollment,
    metrics: Arc<Metrics>,
    token: CancellationToken,
) -> anyhow::Result<()> {
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_mins(5));
    let mut just_issued = false;
    loop {
        let wait = match files::due(&enrollment.cert_file, &enrollment.key_file, now()) {
            Due::At(renew_at) => {
                backoff.reset();
                just_issued = false;
                let wait = u64::try_from(renew_at - now()).unwrap_or(0);
                debug!(renew_at, "agent certificate current");
                Duration::from_secs(wait).min(RECHECK)
            }
            // A certificate that is due again as soon as it was written (a TTL shorter
            // than the clock skew, a key that will not match): back off, do not spin.
            Due::Now(reason) if just_issued => {
                just_issued = false;
                warn!(
                    reason,
                    "the certificate just issued is not usable; asking again later"
                );
                backoff.next_delay()
            }
            Due::Now(reason) => {
                info!(
                    reason,
                    endpoint = enrollment.endpoint,
                    "requesting this node's certificate from the collector"
                );
                match enroll(&enrollment).await {
                    Ok(()) => {
                        metrics.enrollment("issued");
                        enrollment.installed.notify_one();
                        just_issued = true;
                        continue;
                    }
                    Err(err) => {
                        let delay = backoff.next_delay();
                        metrics.enrollment(match &err {
                            RequestError::Refused(_) => "refused",
                            RequestError::Other(_) => "failed",
                        });
                        match &err {
                            RequestError::Refused(status) => warn!(
                                code = ?status.code(),
                                error = status.message(),
                                retry_in_s = delay.as_secs(),
                                "the collector refused a certificate for this node"
                            ),
                            RequestError::Other(err) => warn!(
                                error = format!("{err:#}"),
                                retry_in_s = delay.as_secs(),
                                "requesting the agent certificate failed"
                            ),
                        }
                        delay
                    }
                }
            }
        };
        tokio::select! {
            () = token.cancelled() => return Ok(()),
            () = tokio::time::sleep(wait) => {}
        }
    }
}

async fn enroll(e: &Enrollment) -> Result<(), RequestError> {
    let issued = request(&e.endpoint, &e.ca_file, &e.token_file).await?;
    let chain = issued.chain_pem.clone();
    let (cert_file, key_file) = (e.cert_file.clone(), e.key_file.clone());
    tokio::task::spawn_blocking(move || {
        files::install(&cert_file, &key_file, &chain, &issued.key_pem)
    })
    .await
    .map_err(anyhow::Error::new)??;
    let named = nodeward_runtime::tls::peer_identity(&first_der(&issued.chain_pem)?);
    match named {
        Ok(nodeward_runtime::tls::Peer::Node(node)) if node == e.node_name => info!(
            node,
            not_after = issued.not_after,
            cert = %e.cert_file.display(),
            "agent certificate issued and installed"
        ),
        other => warn!(
            node = e.node_name,
            certificate = ?other,
            "the collector issued a certificate for another identity than this node's name: \
             the collector will refuse this agent's reports (is nodeName right?)"
        ),
    }
    Ok(())
}

fn first_der(chain_pem: &str) -> Result<Vec<u8>, RequestError> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(chain_pem.as_bytes())
        .map_err(|e| anyhow::anyhow!("the issued certificate is not PEM: {e}"))?;
    Ok(pem.contents)
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests;
