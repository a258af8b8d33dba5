//! POSTs findings to an HTTP(S) endpoint, one per request or a batch as a JSON array,
//! retrying with exponential backoff and jitter on 5xx, 408, 429, timeouts and
//! connection errors, and giving up (logged and counted) after `maxRetries`.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::{
    Method, Request, StatusCode, Uri,
    header::{CONTENT_TYPE, HeaderName, HeaderValue},
};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use rand::Rng as _;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::{Cancelled, Encoded, ExportStats, ids};
use crate::export::{
    ExportError, Result, WebhookConfig,
    config::{BackoffConfig, positive},
};

/// Response bodies are read (so the connection can be reused) but never needed whole.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

pub struct WebhookSink {
    client: HttpClient,
    uri: Uri,
    /// Scheme and host only: what logs and errors may show of the URL.
    host: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    timeout: Duration,
    max_retries: u32,
    backoff: Backoff,
    batch: bool,
}

#[derive(Debug, Clone, Copy)]
struct Backoff {
    initial: Duration,
    max: Duration,
}

impl Backoff {
    fn try_from_config(config: BackoffConfig) -> Result<Self, String> {
        Ok(Self {
            initial: positive("export.webhook.backoff.initial", config.initial)?,
            max: positive("export.webhook.backoff.max", config.max)?,
        })
    }

    /// The delay before retry number `retry` (0-based): `initial * 2^retry`, capped at
    /// `max`, of which a random half is taken off so that senders spread out.
    fn delay(self, retry: u32) -> Duration {
        let exp = self
            .initial
            .saturating_mul(2_u32.saturating_pow(retry))
            .min(self.max);
        let half = exp / 2;
        half + half.mul_f64(rand::rng().random::<f64>())
    }
}

impl WebhookSink {
    pub fn new(config: &WebhookConfig) -> Result<Self> {
        let uri = config.uri().map_err(ExportError::Config)?;
        // Not the authority: it may carry `user:password@`.
        let host = format!(
            "{}://{}{}",
            uri.scheme_str().unwrap_or("http"),
            uri.host().unwrap_or_default(),
            uri.port_u16().map(|p| format!(":{p}")).unwrap_or_default()
        );
        Ok(Self {
            client: client(uri.scheme_str() == Some("https"))?,
            uri,
            host,
            headers: config.header_map().map_err(ExportError::Config)?,
            timeout: positive("export.webhook.timeout", config.timeout)
                .map_err(ExportError::Config)?,
            max_retries: config.max_retries,
            backoff: Backoff::try_from_config(config.backoff).map_err(ExportError::Config)?,
            batch: config.batch,
        })
    }

    pub(super) async fn deliver(
        &self,
        batch: &[Encoded],
        stats: &ExportStats,
        cancel: &CancellationToken,
    ) -> Result<(), Cancelled> {
        if self.batch {
            let mut body =
                Vec::with_capacity(batch.iter().map(|e| e.json.len() + 1).sum::<usize>() + 1);
            body.push(b'[');
            for (i, encoded) in batch.iter().enumerate() {
                if i > 0 {
                    body.push(b',');
                }
                body.extend_from_slice(&encoded.json);
            }
            body.push(b']');
            self.send(batch, body.into(), stats, cancel).await
        } else {
            for encoded in batch {
                self.send(
                    std::slice::from_ref(encoded),
                    encoded.json.clone(),
                    stats,
                    cancel,
                )
                .await?;
            }
            Ok(())
        }
    }

    /// Posts one body, retrying; counts `batch` as exported or failed.
    async fn send(
        &self,
        batch: &[Encoded],
        body: Bytes,
        stats: &ExportStats,
        cancel: &CancellationToken,
    ) -> Result<(), Cancelled> {
        let mut retry = 0;
        loop {
            let result = tokio::select! {
                () = cancel.cancelled() => return Err(Cancelled),
                result = self.post(body.clone()) => result,
            };
            let err = match result {
                Ok(()) => {
                    stats.add_exported(batch.len());
                    return Ok(());
                }
                Err(err) => err,
            };
            if !retryable(&err) || retry >= self.max_retries {
                stats.add_failures(batch.len());
                warn!(
                    webhook = %self.host,
                    attempts = retry + 1,
                    error = format!("{:#}", anyhow::Error::new(err)),
                    finding.ids = ?ids(batch),
                    "export webhook gave up; these findings were not delivered"
                );
                return Ok(());
            }
            let delay = self.backoff.delay(retry);
            debug!(webhook = %self.host, retry, ?delay, error = %err, "export webhook failed; retrying");
            tokio::select! {
                () = cancel.cancelled() => return Err(Cancelled),
                () = tokio::time::sleep(delay) => {}
            }
            retry += 1;
        }
    }

    /// One attempt: a 2xx answer within the timeout.
    async fn post(&self, body: Bytes) -> Result<()> {
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.uri.clone();
        let headers = request.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (name, value) in &self.headers {
            headers.insert(name.clone(), value.clone());
        }
        let exchange = async {
            let response =
                self.client
                    .request(request)
                    .await
                    .map_err(|source| ExportError::Request {
                        host: self.host.clone(),
                        source,
                    })?;
            let status = response.status();
            // Drained so that the pooled connection can carry the next request.
            let _ = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
                .collect()
                .await;
            if status.is_success() {
                Ok(())
            } else {
                Err(ExportError::Status {
                    host: self.host.clone(),
                    status,
                })
            }
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| ExportError::Timeout {
                host: self.host.clone(),
                timeout: self.timeout,
            })?
    }
}

/// Whether trying again may help: the endpoint is down, overloaded or slow, rather than
/// refusing what it was sent.
fn retryable(err: &ExportError) -> bool {
    match err {
        ExportError::Request { .. } | ExportError::Timeout { .. } => true,
        ExportError::Status { status, .. } => {
            status.is_server_error()
                || *status == StatusCode::TOO_MANY_REQUESTS
                || *status == StatusCode::REQUEST_TIMEOUT
        }
        _ => false,
    }
}

fn client(https: bool) -> Result<HttpClient> {
    // ring explicitly: the process may have both rustls providers linked in, and then
    // rustls cannot pick a default by itself.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = HttpsConnectorBuilder::new();
    let builder = if https {
        builder
            .with_provider_and_native_roots(provider)
            .map_err(ExportError::Tls)?
    } else {
        // Plain HTTP never uses TLS; an empty trust store avoids requiring system roots.
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ExportError::Tls(std::io::Error::other(e)))?
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        builder.with_tls_config(config)
    };
    let connector = builder.https_or_http().enable_http1().build();
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_max_with_jitter() {
        let backoff = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        for (retry, full) in [
            (0, 100),
            (1, 200),
            (2, 400),
            (3, 800),
            (4, 1000),
            (40, 1000),
        ] {
            let full = Duration::from_millis(full);
            for _ in 0..20 {
                let delay = backoff.delay(retry);
                assert!(
                    delay >= full / 2 && delay <= full,
                    "retry {retry}: {delay:?}"
                );
            }
        }
    }

    #[test]
    fn only_transient_failures_are_retried() {
        let status = |code| ExportError::Status {
            host: "h".into(),
            status: StatusCode::from_u16(code).unwrap(),
        };
        for (code, retry) in [
            (500, true),
            (503, true),
            (429, true),
            (408, true),
            (400, false),
            (401, false),
            (404, false),
        ] {
            assert_eq!(retryable(&status(code)), retry, "{code}");
        }
    }
}
