//! The small HTTP server every nodeward binary runs beside its real work: `/metrics`
//! (Prometheus text format), `/healthz` (the process is up) and `/readyz` (it can do its
//! job). Kubernetes probes and Prometheus scrapes speak plain HTTP/1.1, so that is all it
//! serves.

use std::{net::SocketAddr, sync::Arc};

use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use prometheus_client::{encoding::prometheus_text, registry::Registry};
use tokio::{net::TcpListener, sync::watch};
use tokio_util::sync::CancellationToken;
use tracing::error;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot read the address of the HTTP listener")]
    Addr(#[source] std::io::Error),
    #[error("serving HTTP on {addr} failed")]
    Serve {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Clone)]
struct Shared {
    registry: Arc<Registry>,
    ready: watch::Receiver<bool>,
}

/// The routes, without a listener: for tests and for binaries that add their own routes.
pub fn router(registry: Arc<Registry>, ready: watch::Receiver<bool>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(Shared { registry, ready })
}

/// Serves `/metrics` from `registry`, `/healthz`, and `/readyz` (200 while `ready` holds
/// `true`, 503 otherwise) on `listener` until `token` is cancelled.
///
/// Binding is left to the caller, so that a port already in use fails start-up with the
/// caller's own context, and tests can bind port 0 and read the address.
pub async fn serve(
    listener: TcpListener,
    registry: Arc<Registry>,
    ready: watch::Receiver<bool>,
    token: CancellationToken,
) -> Result<(), HttpError> {
    let addr = listener.local_addr().map_err(HttpError::Addr)?;
    axum::serve(listener, router(registry, ready))
        .with_graceful_shutdown(token.cancelled_owned())
        .await
        .map_err(|source| HttpError::Serve { addr, source })
}

async fn metrics(State(shared): State<Shared>) -> Response {
    let mut body = String::new();
    match prometheus_text::encode(&mut body, &shared.registry) {
        Ok(()) => (
            [(header::CONTENT_TYPE, prometheus_text::CONTENT_TYPE)],
            body,
        )
            .into_response(),
        Err(err) => {
            // fmt::Error carries no detail; it only happens when a metric's encoder fails.
            error!(error = %err, "encoding metrics failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(shared): State<Shared>) -> (StatusCode, &'static str) {
    if *shared.ready.borrow() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::metrics::counter::Counter;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    /// One HTTP/1.1 GET over a fresh connection; returns the status code and the body.
    async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(
                format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
            )
            .await
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        let status = response
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {response:?}"));
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        (status, body)
    }

    #[tokio::test]
    async fn serves_metrics_health_and_readiness_until_cancelled() {
        let mut registry = Registry::with_prefix("nodeward");
        let counter: Counter = Counter::default();
        registry.register("things", "Things done", counter.clone());
        counter.inc_by(3);
        let (ready_tx, ready) = watch::channel(false);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let token = CancellationToken::new();
        let server = tokio::spawn(serve(listener, Arc::new(registry), ready, token.clone()));

        let (status, body) = get(addr, "/metrics").await;
        assert_eq!(status, 200);
        assert!(body.contains("nodeward_things_total 3"), "{body}");
        assert_eq!(get(addr, "/healthz").await.0, 200);
        assert_eq!(get(addr, "/readyz").await.0, 503);
        ready_tx.send_replace(true);
        assert_eq!(get(addr, "/readyz").await.0, 200);
        assert_eq!(get(addr, "/nothing").await.0, 404);

        token.cancel();
        tokio::time::timeout(std::time::Duration::from_secs(5), server)
            .await
            .expect("the server stops when cancelled")
            .unwrap()
            .unwrap();
    }
}
