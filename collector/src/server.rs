//! The gRPC server: agent ingestion, the SOC feed and standard gRPC health, on one
//! listener.

use std::{sync::Arc, time::Duration};

use anyhow::Context as _;
use nodeward_proto::v1::{
    agent_service_server::AgentServiceServer, soc_service_server::SocServiceServer,
};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tonic::transport::Server;
use tracing::{info, warn};

use crate::{agent_service::AgentApi, feed::Feed, soc_service::SocApi, store::Store};

/// How long open streams get to end after shutdown starts.
const STREAM_GRACE: Duration = Duration::from_secs(5);

pub struct Collector {
    feed: Arc<Feed>,
    tracker: TaskTracker,
    token: CancellationToken,
}

impl Collector {
    pub fn new(store: Store) -> Self {
        Self {
            feed: Arc::new(Feed::new(Arc::new(store))),
            tracker: TaskTracker::new(),
            token: CancellationToken::new(),
        }
    }

    /// Serves on `listener` until `shutdown` completes, then ends every open stream.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> anyhow::Result<()> {
        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_serving::<AgentServiceServer<AgentApi>>().await;
        health.set_serving::<SocServiceServer<SocApi>>().await;
        let agents = AgentApi::new(self.feed.clone(), self.tracker.clone(), self.token.clone());
        let soc = SocApi::new(self.feed.clone(), self.tracker.clone(), self.token.clone());
        let addr = listener
            .local_addr()
            .context("reading the listener's address")?;
        info!(%addr, "collector listening");

        let token = self.token.clone();
        let shutdown = async move {
            shutdown.await;
            // Long-lived streams would hold graceful shutdown open forever; end them.
            token.cancel();
        };
        Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .add_service(health_service)
            .add_service(AgentServiceServer::new(agents))
            .add_service(SocServiceServer::new(soc))
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
            .await
            .context("serving gRPC")?;
        self.tracker.close();
        if tokio::time::timeout(STREAM_GRACE, self.tracker.wait())
            .await
            .is_err()
        {
            warn!(
                streams = self.tracker.len(),
                "streams still open after the grace period"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
