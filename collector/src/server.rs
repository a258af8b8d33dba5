//! The gRPC server: agent ingestion, the SOC feed, standard gRPC health and reflection, on
//! one listener; beside it the housekeeping tasks (silent nodes, retention, exports, fleet
//! metrics, certificate reloads) and the HTTP endpoint for metrics and probes.

use std::{sync::Arc, time::Duration};

use anyhow::Context as _;
use nodeward_proto::v1::{
    agent_enrollment_service_server::AgentEnrollmentServiceServer,
    agent_service_server::AgentServiceServer, soc_service_server::SocServiceServer,
};
use prometheus_client::registry::Registry;
use tokio::{net::TcpListener, sync::watch};
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tonic::transport::Server;
use tracing::{info, warn};

use crate::{
    agent_service::AgentApi,
    auth::Auth,
    enroll::EnrollmentApi,
    export::Exporter,
    feed::Feed,
    metrics::{self, Metrics},
    retention, silence,
    soc_service::SocApi,
    store::Store,
    tls::{self, ServerTls},
};

/// How long open streams get to end after shutdown starts.
const STREAM_GRACE: Duration = Duration::from_secs(5);
/// An open Report stream records its node as heard from at least this often.
const MAX_TOUCH_EVERY: Duration = Duration::from_secs(10);
/// The largest message the collector decodes (tonic's default, stated so that it is a
/// decision): an agent sends at most 256 findings a batch, far below it. A larger message
/// ends its stream with `OUT_OF_RANGE`; the connection and other streams carry on.
pub const MAX_MESSAGE_BYTES: usize = 4 << 20;

pub struct Collector {
    feed: Arc<Feed>,
    tracker: TaskTracker,
    token: CancellationToken,
    silence_after: Duration,
    retention: Duration,
    exporter: Option<Exporter>,
    http: Option<TcpListener>,
    tls: Option<ServerTls>,
    enrollment: Option<EnrollmentApi>,
}

impl Collector {
    /// A collector with the default silence interval (5 minutes) and retention (30
    /// days), no exports and no HTTP endpoint.
    pub fn new(store: Store) -> Self {
        Self {
            feed: Arc::new(Feed::with_metrics(Arc::new(store), Arc::default())),
            tracker: TaskTracker::new(),
            token: CancellationToken::new(),
            silence_after: Duration::from_mins(5),
            retention: Duration::from_hours(30 * 24),
            exporter: None,
            http: None,
            tls: None,
            enrollment: None,
        }
    }

    /// The metrics every part of the collector counts into.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.feed.metrics().clone()
    }

    /// Serves `AgentEnrollmentService` beside the other APIs (with TLS whose client
    /// certificates are optional; see `auth`).
    #[must_use]
    pub fn enrollment(mut self, enrollment: EnrollmentApi) -> Self {
        self.enrollment = Some(enrollment);
        self
    }

    /// Requires mutual TLS on the gRPC listener, and the identities in the client
    /// certificates for every call (see `auth`). The certificate files are read again
    /// when they change.
    #[must_use]
    pub fn tls(mut self, tls: ServerTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Nodes not heard from for this long are reported `node-silent`.
    #[must_use]
    pub fn silence_after(mut self, silence_after: Duration) -> Self {
        self.silence_after = silence_after;
        self
    }

    /// Findings received longer ago than this are deleted.
    #[must_use]
    pub fn retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// Copies stored findings to the exporter's sinks.
    #[must_use]
    pub fn export(mut self, exporter: Exporter) -> Self {
        self.exporter = Some(exporter);
        self
    }

    /// Serves `/metrics`, `/healthz` and `/readyz` on `listener`.
    #[must_use]
    pub fn http(mut self, listener: TcpListener) -> Self {
        self.http = Some(listener);
        self
    }

    /// Serves on `listener` until `shutdown` completes, then ends every open stream.
    pub async fn serve(
        mut self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> anyhow::Result<()> {
        // Before anything is spawned: a failure here leaves nothing running.
        let reflection = reflection()?;
        let (ready_tx, ready) = watch::channel(false);
        let http_token = CancellationToken::new();
        let http = match self.http.take() {
            Some(http) => Some(start_http(
                http,
                self.registry(),
                ready,
                http_token.clone(),
            )?),
            None => None,
        };
        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_serving::<AgentServiceServer<AgentApi>>().await;
        health.set_serving::<SocServiceServer<SocApi>>().await;
        if self.enrollment.is_some() {
            health
                .set_serving::<AgentEnrollmentServiceServer<EnrollmentApi>>()
                .await;
        }
        let touch_every = (self.silence_after / 4).min(MAX_TOUCH_EVERY);
        let auth = if self.tls.is_some() {
            Auth::Mutual
        } else {
            Auth::Disabled
        };
        let agents = AgentApi::new(
            self.feed.clone(),
            self.tracker.clone(),
            self.token.clone(),
            touch_every,
        )
        .with_auth(auth);
        let soc = SocApi::new(self.feed.clone(), self.tracker.clone(), self.token.clone())
            .with_auth(auth);
        let exporter = self.exporter.take();
        self.spawn_housekeeping(exporter);
        if let Some(tls) = &self.tls {
            self.tracker.spawn(
                tls.clone()
                    .watch_files(tls::RELOAD_POLL, self.token.clone()),
            );
        }
        let addr = listener
            .local_addr()
            .context("reading the listener's address")?;
        info!(%addr, "collector listening");

        // The store is open and the listener bound: connections queue until the server
        // accepts them a moment later.
        ready_tx.send_replace(true);
        let token = self.token.clone();
        let shutdown = async move {
            shutdown.await;
            ready_tx.send_replace(false);
            // Long-lived streams would hold graceful shutdown open forever; end them.
            token.cancel();
        };
        let router = Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .add_service(health_service)
            .add_service(reflection)
            .add_service(
                AgentServiceServer::new(agents).max_decoding_message_size(MAX_MESSAGE_BYTES),
            )
            .add_service(SocServiceServer::new(soc).max_decoding_message_size(MAX_MESSAGE_BYTES))
            .add_optional_service(
                self.enrollment
                    .take()
                    .map(AgentEnrollmentServiceServer::new),
            );
        let result = match self.tls.clone() {
            Some(tls) => {
                let incoming = tls::incoming(listener, tls, self.token.clone());
                router
                    .serve_with_incoming_shutdown(incoming, shutdown)
                    .await
            }
            None => {
                router
                    .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
                    .await
            }
        }
        .context("serving gRPC");
        // Also when serving failed: the tasks must not outlive the server.
        self.token.cancel();
        self.tracker.close();
        if tokio::time::timeout(STREAM_GRACE, self.tracker.wait())
            .await
            .is_err()
        {
            warn!(
                tasks = self.tracker.len(),
                "streams and tasks still running after the grace period"
            );
        }
        // After the streams: the batches they were waiting on are answered first.
        self.feed.close().await;
        http_token.cancel();
        if let Some(http) = http {
            http.await.context("the HTTP endpoint panicked")??;
        }
        result
    }

    /// Every metric, registered under the `nodeward_` prefix.
    fn registry(&self) -> Arc<Registry> {
        let mut registry = Registry::with_prefix("nodeward");
        self.feed
            .metrics()
            .register(&mut registry, self.exporter.as_ref().map(Exporter::stats));
        Arc::new(registry)
    }

    fn spawn_housekeeping(&self, exporter: Option<Exporter>) {
        let (feed, token) = (&self.feed, &self.token);
        self.tracker.spawn(silence::run(
            feed.clone(),
            self.silence_after,
            token.clone(),
        ));
        self.tracker.spawn(retention::run(
            feed.store_arc(),
            self.retention,
            token.clone(),
        ));
        self.tracker.spawn(metrics::refresh_fleet(
            Arc::clone(feed.metrics()),
            feed.store_arc(),
            token.clone(),
        ));
        if let Some(exporter) = exporter {
            self.tracker
                .spawn(exporter.run(feed.clone(), token.clone()));
        }
    }
}

/// gRPC reflection (`grpc.reflection.v1`) describing `nodeward.v1`, `grpc.health.v1` and
/// itself, so `grpcurl` and the like need no .proto files.
fn reflection() -> anyhow::Result<
    tonic_reflection::server::v1::ServerReflectionServer<
        impl tonic_reflection::server::v1::ServerReflection,
    >,
> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(nodeward_proto::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("building the gRPC reflection service")
}

/// Starts the HTTP endpoint; its failure is reported when the collector stops.
fn start_http(
    listener: TcpListener,
    registry: Arc<Registry>,
    ready: watch::Receiver<bool>,
    token: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<()>>> {
    let addr = listener
        .local_addr()
        .context("reading the HTTP listener's address")?;
    info!(%addr, "metrics listening");
    Ok(tokio::spawn(async move {
        nodeward_runtime::http::serve(listener, registry, ready, token)
            .await
            .map_err(anyhow::Error::new)
    }))
}

#[cfg(test)]
mod fleet_tests;
#[cfg(test)]
mod limits_tests;
#[cfg(test)]
mod tests;
