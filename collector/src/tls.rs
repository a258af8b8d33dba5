//! The TLS side of the listener: every connection must complete a mutual TLS handshake
//! with a client certificate from the configured CA before gRPC sees it. The handshake is
//! done here rather than inside tonic so that a refused client (no certificate, another
//! CA, an expired certificate) is logged with its address and the reason: a SOC wants
//! to know who knocked.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use nodeward_runtime::tls::peer_identity;
use rustls::ServerConfig;
use tokio::{
    net::{TcpListener, TcpStream},
    sync::mpsc,
};
use tokio_rustls::{TlsAcceptor, server::TlsStream};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// A client that connects and says nothing is dropped after this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts on `listener` and yields the connections whose handshake succeeded, until
/// `token` is cancelled. Handshakes run concurrently so a slow client cannot hold up
/// the others.
pub fn incoming(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    token: CancellationToken,
) -> ReceiverStream<std::io::Result<TlsStream<TcpStream>>> {
    let (tx, rx) = mpsc::channel(64);
    let acceptor = TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let (tcp, addr) = tokio::select! {
                () = token.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        // Out of file descriptors and the like: keep serving the
                        // connections already open and try again shortly.
                        warn!(error = %err, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                if let Some(stream) = handshake(&acceptor, tcp, addr).await {
                    let _ = tx.send(Ok(stream)).await;
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

async fn handshake(
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
    addr: SocketAddr,
) -> Option<TlsStream<TcpStream>> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => {
            let peer = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certs| certs.first())
                .map(|cert| peer_identity(cert));
            match peer {
                Some(Ok(peer)) => debug!(%addr, %peer, "TLS client authenticated"),
                Some(Err(reason)) => {
                    info!(%addr, reason, "TLS client has no nodeward identity; its calls will be refused");
                }
                None => {}
            }
            Some(stream)
        }
        Ok(Err(err)) => {
            warn!(%addr, error = %err, "TLS handshake refused");
            None
        }
        Err(_) => {
            warn!(%addr, timeout_s = HANDSHAKE_TIMEOUT.as_secs(), "TLS handshake timed out");
            None
        }
    }
}
